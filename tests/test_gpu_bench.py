"""`python bench/gpu.py --quick` runs every measurement of the GPU benchmark on this CPU.

Tiny sizes (the numbers mean nothing here); what is checked is that the script runs end to
end from the command line, fills every row, trains on its synthetic data (the loss of the
timed epochs falls) and records the JAX version and the device.
"""
import os
import re
import subprocess
import sys

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_bench_quick_fills_every_row(tmp_path):
  out = tmp_path / "gpu.md"
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gpu.py"), "--quick", "--out", str(out)],
                        cwd=str(tmp_path), capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  text = out.read_text()
  rows = [line for line in text.splitlines() if line.startswith("| (")]
  assert [r.split("|")[1].strip()[:3] for r in rows] == ["(a)", "(a)", "(b)", "(b)", "(c)"]
  for row in rows:
    ours = row.split("|")[2].strip()
    assert re.fullmatch(r"[\d,.]+( s| min| h)?", ours), row  # a number, not "not measured"
  for row in rows[:2]:  # (a): the models learn the synthetic classes while timed
    first, last = map(float, re.search(r"mean loss (\d+\.\d+) -> (\d+\.\d+)", row).groups())
    assert last < first, row
  assert f"- JAX: {jax.__version__}" in text and "- device: " in text and "memory" in text
  assert "(a) memorization" in proc.stdout  # the table is printed too
