"""Compares every value of two folders of continual work directories made by two versions of
rum-jax (same names under both): matrices.npz, steps.csv, progress.json (all but seconds), and
every per-seed metric of the old metrics.json (per_seed: one dict per seed, of_mean_matrices)
against the new metrics.json / metrics.csv / curves.csv.

python bench/continual_compare.py <old runs> <new runs>

Used to check that restructuring the continual code changed no value: the digits A4 preset
(both variants, every method) run by a `git archive` copy of the old commit and by the new one.
"""
import json, os, sys
import numpy as np, pandas as pd
old_root, new_root = sys.argv[1], sys.argv[2]
checked = 0; bad = []; added = set()
def same(a, b, what):
  global checked
  checked += np.size(a)
  if not np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_nan=True):
    bad.append(what)
runs = [r for r in sorted(os.listdir(old_root)) if os.path.isdir(os.path.join(old_root, r))]  # logs beside them
for run in runs:
  o, n = os.path.join(old_root, run), os.path.join(new_root, run)
  mo, mn = np.load(f"{o}/matrices.npz"), np.load(f"{n}/matrices.npz")
  for k in mo.files:
    if mo[k].dtype.kind in "fiub":
      same(mo[k], mn[k], f"{run} matrices {k}")
    else:
      assert list(mo[k]) == list(mn[k]), (run, k)
  so, sn = pd.read_csv(f"{o}/steps.csv"), pd.read_csv(f"{n}/steps.csv")
  assert set(so.columns) <= set(sn.columns), (run, set(so.columns) - set(sn.columns))
  added.update(set(sn.columns) - set(so.columns))  # new columns (e.g. held-out accuracy): listed, not compared
  for c in so.columns:
    if so[c].dtype.kind in "fi": same(so[c], sn[c], f"{run} steps.csv {c}")
    else: assert (so[c] == sn[c]).all()
  po, pn = json.load(open(f"{o}/progress.json")), json.load(open(f"{n}/progress.json"))
  for a, b in zip(po["steps"], pn["steps"]):
    for k in a:
      if k != "seconds": same(np.asarray(a[k], float), np.asarray(b[k], float), f"{run} progress {k}")
  same(po["threshold"], pn["threshold"], f"{run} threshold")
  old, new = json.load(open(f"{o}/metrics.json")), json.load(open(f"{n}/metrics.json"))
  curves = pd.read_csv(f"{n}/curves.csv")
  for key in old["per_seed"][0]:
    values = [ps[key] for ps in old["per_seed"]]
    if key in ("cl_tow", "clu_mix"):
      for s, v in enumerate(values):
        got = curves[(curves.metric == key) & (curves.seed == s)].sort_values("step")["value"].to_numpy()
        same(v, got, f"{run} curve {key} seed {s}")
    else:
      same(values, new["per_seed"][key], f"{run} {key}")
  for key, v in old["of_mean_matrices"].items():
    if key in ("cl_tow", "clu_mix"): continue
    same([v], new["per_seed"][f"{key}_of_mean_matrices"], f"{run} {key} of mean matrices")
  rec = pd.read_csv(f"{n}/metrics.csv")
  for key, values in new["per_seed"].items():
    same(values, rec[rec.metric == key]["value"].to_numpy(), f"{run} metrics.csv {key}")
print("columns only the new version writes:", sorted(added))
print(f"{len(runs)} runs, {checked} values compared, {len(bad)} differ", bad[:20])
