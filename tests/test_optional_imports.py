"""rum_jax without its optional packages: what still works, and how the rest fails.

tensorflow-datasets, mnist1d, jaxopt and matplotlib are each needed by one feature only
(tensorboardX and tqdm too: TensorBoard files and the progress bar, skipped with a warning).
A subprocess makes them unimportable (`sys.modules[name] = None` makes `import name` raise
ImportError, exactly as for a package that is not installed) and then imports rum_jax,
loads the embedded digits, a CIFAR-10 archive and an .npz file, and checks that the features needing a
missing package fail with a one-line message naming the package and the feature.
"""
import os
import subprocess
import sys
import textwrap

import pytest

from rum_jax import optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MISSING = ("tensorflow_datasets", "mnist1d", "jaxopt", "matplotlib", "tensorboardX", "tqdm")

SCRIPT = textwrap.dedent("""
    import os, pickle, sys, tempfile
    import numpy as np
    for name in sys.argv[1].split(","):
      sys.modules[name] = None

    import rum_jax
    import rum_jax.io
    from rum_jax import data
    import rum_jax.continual.qp as qp
    import rum_jax.models
    # Every command's modules import too (their optional packages load inside functions).
    import rum_jax.commands, rum_jax.pipelines.training, rum_jax.pipelines.memorization
    import rum_jax.pipelines.unlearning, rum_jax.pipelines.continual, rum_jax.pipelines.study

    digits = data.load_dataset("digits", split_seed=0)
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797

    # A tiny CIFAR-10 archive folder (the python pickles), 4 images per batch.
    root = tempfile.mkdtemp()
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    def dump(name, n, offset):
      labels = [(offset + i) % 10 for i in range(n)]
      with open(os.path.join(folder, name), "wb") as f:
        pickle.dump({b"labels": labels,
                     b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}, f)
    for b in range(1, 6):
      dump(f"data_batch_{b}", 4, 4 * b)
    dump("test_batch", 10, 0)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
      pickle.dump({b"label_names": [f"c{k}".encode() for k in range(10)]}, f)
    cifar = data.load_dataset("cifar10", data_dir=root, split_seed=0, val_per_class=0,
                              source="archive")
    assert len(cifar.train) == 20 and len(cifar.test) == 10
    npz_file = os.path.join(root, "mine.npz")
    np.savez(npz_file, x=rng.normal(size=(30, 4)), y=np.arange(30) % 3)
    assert len(data.load_dataset("npz", split_seed=0, path=npz_file).train) == 21

    def message(fn):
      try:
        fn()
      except ImportError as err:
        return str(err)
      raise AssertionError("no ImportError")
    print("TFDS|" + message(lambda: data.load_dataset("cifar10", data_dir=root, source="tfds")))
    print("MNIST1D|" + message(lambda: data.load_dataset("mnist1d")))
    print("TFDS_ANY|" + message(lambda: data.load_dataset("tfds", name="svhn_cropped")))
    print("JAXOPT|" + message(qp._solver))
    print("MATPLOTLIB|" + message(rum_jax.io.pyplot))
    try:
      data.load_dataset("cifar10", data_dir=tempfile.mkdtemp(), source="auto")
    except FileNotFoundError as err:
      print("AUTO|" + str(err).replace(chr(10), " "))
""")


def _run(missing):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
  result = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(missing)], env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return dict(line.split("|", 1) for line in result.stdout.splitlines() if "|" in line)


def test_rum_jax_digits_cifar_archive_and_npz_work_without_the_optional_packages():
  messages = _run(MISSING)
  for key, package, feature in [("TFDS", "tensorflow-datasets", "reading CIFAR-10 from TFDS"),
                                ("MNIST1D", "mnist1d", "the mnist1d data set"),
                                ("TFDS_ANY", "tensorflow-datasets", "the tfds data set ('svhn_cropped')"),
                                ("JAXOPT", "jaxopt", "GEM's gradient projection"),
                                ("MATPLOTLIB", "matplotlib", "writing figures")]:
    text = messages[key]
    assert "\n" not in text
    assert f"needs the package {package!r}" in text and text.startswith(feature)
    assert f"pip install {package}" in text
  # source='auto' without an archive and without TFDS: the data is what is missing.
  assert "CIFAR-10 not found" in messages["AUTO"] and "tensorflow-datasets" in messages["AUTO"]


def test_require_returns_the_module_and_names_a_missing_one(monkeypatch):
  import json
  assert optional.require("json", "anything") is json
  monkeypatch.setitem(sys.modules, "rum_jax_absent_pkg", None)
  with pytest.raises(ImportError, match=r"^plotting needs the package 'absent-pkg'.*"
                                        r"pip install absent-pkg$"):
    optional.require("rum_jax_absent_pkg", "plotting", package="absent-pkg")
