"""An audit of forgetting quality on digits: the NeurIPS 2023 challenge score and U-LiRA per method.

python evaluate.py --config=configs/audit_digits.py --workdir=runs/audit_digits

One original MLP; 512 models retrained without a random forget set of 150 (shared by every
method) and 512 unlearned from the original per method; 128 shadow models on random halves
for U-LiRA and LiRA (docs/audit.md). Each bank trains 64 models per program.
"""
import ml_collections

from rum_jax.configs import digits
from rum_jax.evaluation.metrics import DEFAULT_BANK_METRICS
from rum_jax.evaluation.lira import CENTRINGS
from rum_jax.unlearning import interface as unlearning


def get_config():
  c = digits.get_config()
  c.mode = "audit"
  c.forget.kind = "random"   # the challenge forgets a random subset; any config.forget kind works
  c.forget.size = 150        # of 1,257 train examples; the shadow models forget as many from their halves
  # WoodFisher's Fisher from 256 retain examples instead of 1,000: its n x n Gram matrix of
  # per-example gradients costs n^2 x 2P FLOPs per model (P = 85k weights), 180 GFLOP at
  # n = 1,000: 11 min per 64 models on 2 busy CPU cores, 16x less at n = 256.
  c.unlearn.wfisher.num_samples = 256
  c.audit = ml_collections.ConfigDict()
  # Every step method of the registry; retrain: the ideal's F at this N.
  c.audit.methods = ("retrain",) + tuple(unlearning.step_methods())
  c.audit.metrics = DEFAULT_BANK_METRICS  # the table's columns, by name from METRICS
  c.audit.lira_centring = CENTRINGS[0]  # mean | median (tensorflow/privacy's), docs/audit.md
  c.audit.num_models = 512     # N: retrained and unlearned models per method (the challenge's 512)
  c.audit.shadow_models = 128  # K: shadow models for U-LiRA / LiRA; 0 = no attacks
  c.audit.chunk_size = 64      # models trained at once as one program
  c.audit.seed = 0             # seeds every bank (halves, forget subsets, models)
  c.audit.svc_targets = 16     # trained shadow models the SVC attack is compared with LiRA on
  c.audit.results_dir = ""     # also write the tables and figures there ("" = only the workdir)
  return c
