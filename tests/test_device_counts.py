"""A work directory made on N devices resumes and extends on M with equal results.

3 seeds on 2 devices are padded to 4, a bank chunk of 6 models on 4 devices to 8: what is
saved holds the real seeds only, so train.py, unlearn.py, continual.py and the audit
banks resume (and take new methods) on 1, 2 or 4 devices. Continual runs are bit-equal: a run
made on 1, 2 or 4 devices, and one killed on 2 devices and resumed on 1 or 4, give the same
matrices, metrics and forget steps to the last bit. A process's device count is fixed when
JAX starts, so each count runs in a subprocess: this file is also that script
(`python tests/test_device_counts.py <stage> <folder>`).
"""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICES = {"make": 2, "resume_on_4": 4, "resume_on_1": 1}


def _rewind(checkpoints: str, run_dir: str) -> None:
  """As if the run was killed before its last checkpoint: that checkpoint and metrics.json go."""
  last = max(int(d) for d in os.listdir(checkpoints) if d.isdigit())
  shutil.rmtree(os.path.join(checkpoints, str(last)))
  os.remove(os.path.join(run_dir, "metrics.json"))


def _configs():
  from rum_jax.configs import audit_digits, continual_digits, default
  train = default.get_config()
  train.num_seeds = 3
  train.model.kwargs.hidden = (16,)
  train.train.update(epochs=2, batch_size=128)
  unlearn = default.get_config()
  unlearn.num_seeds = 3
  unlearn.model.kwargs.hidden = (16,)
  unlearn.train.update(epochs=2, batch_size=128)
  unlearn.forget.size = 30
  unlearn.unlearn.neggrad_plus.update(epochs=2, batch_size=128)
  unlearn.unlearn.finetune.update(epochs=1, batch_size=128)
  continual = continual_digits.get_config("thesis")  # GEM, BatchNorm, SalUn, a train-mode stop rule
  continual.num_seeds = 3
  continual.model.kwargs.hidden = (16,)
  continual.continual.sequence = "0,1,-1"
  continual.continual.epochs = 1
  continual.continual.unlearn_max_epochs = 2
  continual_digits.set_memories(continual, memories=8, agem_memories=8)
  audit = audit_digits.get_config()
  audit.model.kwargs.hidden = (16,)
  audit.train.update(epochs=2, batch_size=128)
  audit.forget.size = 500  # of 628 per shadow half: every example is unlearned by a few of the 6
  audit.unlearn.finetune.update(epochs=1, batch_size=128)
  audit.unlearn.neggrad.update(epochs=1, batch_size=128)
  audit.audit.update(num_models=6, shadow_models=6, chunk_size=6, svc_targets=2)
  return train, unlearn, continual, audit


def _stage(stage: str, base: str) -> None:
  """One device count's share of the runs (the test below reads what they leave in `base`)."""
  from absl import logging
  from rum_jax import commands
  logging.set_verbosity(logging.INFO)
  train, unlearn, continual, audit = _configs()

  def method(name):
    c = unlearn.copy_and_resolve_references()
    c.unlearn.method = name
    return c

  def banks(*methods):
    c = audit.copy_and_resolve_references()
    c.audit.methods = methods
    return c

  path = lambda name: os.path.join(base, name)  # noqa: E731
  if stage == "make":  # on 2 devices: 3 seeds padded to 4
    commands.train(train, path("train_2"))
    commands.unlearn(method("neggrad_plus"), path("unlearn_2"))
    commands.continual(continual, path("continual_2"))
    for n in (1, 4):
      shutil.copytree(path("train_2"), path(f"train_{n}"))
      _rewind(path(f"train_{n}/checkpoints"), path(f"train_{n}"))
      shutil.copytree(path("unlearn_2"), path(f"unlearn_{n}"))
      _rewind(path(f"unlearn_{n}/methods/neggrad_plus/checkpoints"), path(f"unlearn_{n}/methods/neggrad_plus"))
      shutil.copytree(path("continual_2"), path(f"continual_{n}"))
      _rewind(path(f"continual_{n}/checkpoints"), path(f"continual_{n}"))
    commands.unlearn(method("finetune"), path("unlearn_2"))  # what the others add on their devices
    return
  n = DEVICES[stage]
  commands.train(train, path(f"train_{n}"))  # resumes from epoch 1
  commands.unlearn(method("neggrad_plus"), path(f"unlearn_{n}"))  # resumes; original, reference restored
  commands.unlearn(method("finetune"), path(f"unlearn_{n}"))  # a method added later
  commands.continual(continual, path(f"continual_{n}"))  # resumes from its next-to-last step
  commands.continual(continual, path(f"continual_fresh_{n}"))  # made on n devices from the start
  if n == 4:  # a bank chunk of 6 models on 4 devices: padded to 8
    commands.evaluate(path("audit_4"), banks("finetune"))
    shutil.copytree(path("audit_4"), path("audit_1"))
  # neggrad added later: unlearned from the saved shadow models (made on 4 devices)
  commands.evaluate(path(f"audit_{n}"), banks("finetune", "neggrad"))


def _run(stage: str, base: str) -> str:
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES[stage]}")
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), stage, base], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc.stderr


def test_runs_resume_and_extend_on_other_device_counts(tmp_path):
  import numpy as np
  from rum_jax import io
  base = str(tmp_path)
  _run("make", base)
  logs = {n: _run(stage, base) for stage, n in (("resume_on_4", 4), ("resume_on_1", 1))}
  for n, log in logs.items():
    assert f"train_{n}/checkpoints" in log and "[train] resumed from epoch 1/2" in log, log[-3000:]
    assert "[neggrad_plus] resumed from epoch 1/2" in log, log[-3000:]
    assert "[continual] resumed after step 2/3" in log, log[-3000:]
    assert "holds checkpoints of another program" not in log, log[-3000:]

  def close(a, b, what):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=what)

  for n in (1, 4):
    for split in ("train", "test"):
      close(np.load(f"{base}/train_{n}/predictions/{split}.npz")["logits"],
            np.load(f"{base}/train_2/predictions/{split}.npz")["logits"], f"train on {n}: {split} logits")
    for name in ("neggrad_plus", "finetune"):
      got = io.read_json(f"{base}/unlearn_{n}/methods/{name}/metrics.json")["per_seed"]
      want = io.read_json(f"{base}/unlearn_2/methods/{name}/metrics.json")["per_seed"]
      assert len(got["tow"]) == 3
      for key in ("forget_accuracy", "test_accuracy", "tow"):
        close(got[key], want[key], f"{name} on {n}: {key}")
    want = f"{base}/continual_2"
    for got in (f"{base}/continual_{n}", f"{base}/continual_fresh_{n}"):
      per_seed = io.read_json(f"{got}/metrics.json")["per_seed"]
      assert len(per_seed["final_clu_mix"]) == 3 and per_seed == io.read_json(f"{want}/metrics.json")["per_seed"], got
      matrices, expected = np.load(f"{got}/matrices.npz"), np.load(f"{want}/matrices.npz")
      for key in expected.files:
        np.testing.assert_array_equal(matrices[key], expected[key], err_msg=f"{got}: {key}")
      steps = [{k: v for k, v in step.items() if k != "seconds"} for step in io.read_json(f"{got}/progress.json")["steps"]]
      assert steps == [{k: v for k, v in step.items() if k != "seconds"}
                       for step in io.read_json(f"{want}/progress.json")["steps"]], got
  for bank in ("shadow/neggrad", "unlearned/neggrad"):
    got = np.load(f"{base}/audit_1/{bank}/chunks/chunk_00000.npz")
    want = np.load(f"{base}/audit_4/{bank}/chunks/chunk_00000.npz")
    for key in ("forget_accuracy", "test_accuracy"):
      assert got[key].shape == (6,)
      close(got[key], want[key], f"{bank}: {key}")
  weights = np.load(f"{base}/audit_4/shadow/trained/weights/chunk_00000.npz")
  assert all(weights[k].shape[0] == 6 for k in weights.files), "saved without the 2 padding models"


if __name__ == "__main__":
  sys.path.insert(0, ROOT)
  _stage(sys.argv[1], sys.argv[2])
