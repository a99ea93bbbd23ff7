"""SalUn weight saliency: the weights the forget loss is most sensitive to.

Fan et al. 2024, "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in
Both Image Classification and Generation", ICLR (arXiv:2310.12508), Sec. 4, the weight
saliency map:

  m_S = 1( |grad_theta L_f(theta; D_f)| at theta_o  >=  gamma ),

with L_f the forget loss (cross-entropy over the forget set, in eval mode as the original
`generate_mask.py`; its sign does not matter under |.|) and gamma the single threshold over
ALL weights that keeps the top `ratio` of them (0.5 by default; 0.1..0.5 in the paper).
RUM's `generate_mask.py` keeps the SMALLEST fraction by mistake (ones where the ascending
rank is below the threshold index); here the largest are kept. Unlearning multiplies every
gradient by m_S (same section), before the optimizer adds weight decay, as `param.grad *= mask` does.

The magnitudes |g| are saved (per seed, flattened in `ravel_pytree` order) with the forget
set they belong to, so a mask at any ratio is derived later without another gradient pass.
"""
import os
from typing import Any, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from rum_jax import io
from rum_jax.training.state import Forward, TrainState
from rum_jax.unlearning import gradients


def saliency_magnitudes(state: TrainState, plan: Dict[str, jnp.ndarray], data: Dict[str, jnp.ndarray], *,
                        forward: Forward) -> jnp.ndarray:
  """One seed's |grad_theta mean_{i in forget} CE| at the current weights, flattened: [P]."""
  g = gradients.mean_ce_gradient(forward, state.params, state.batch_stats, data, plan)
  return jnp.abs(ravel_pytree(g)[0])


def top_fraction_mask(magnitudes: np.ndarray, ratio: float) -> np.ndarray:
  """float32 0/1 mask keeping exactly k = round(ratio * P) entries: those with the largest |g|.

  Ties at the threshold are broken by position (the earlier entry is kept), so the count is
  exact even when many magnitudes are equal (e.g. zero gradients of dead units).
  """
  magnitudes = np.asarray(magnitudes)
  if magnitudes.ndim != 1:
    raise ValueError(f"magnitudes must be a flat [P] array; got shape {magnitudes.shape}")
  if not 0.0 < ratio <= 1.0:
    raise ValueError(f"mask ratio must be in (0, 1] (the fraction of weights kept); got {ratio}")
  keep = int(round(ratio * magnitudes.size))
  order = np.argsort(-magnitudes, kind="stable")
  mask = np.zeros(magnitudes.size, np.float32)
  mask[order[:keep]] = 1.0
  return mask


def masks_like(magnitudes: np.ndarray, ratio: Any, params: Any) -> Any:
  """Per-seed masks [S, P] -> a pytree shaped like the stacked per-seed `params`.

  ratio: one fraction for every seed, or one per seed (a sweep over the mask ratio).
  """
  template = jax.tree.map(lambda p: np.asarray(p[0]), params)
  unravel = ravel_pytree(template)[1]
  magnitudes = np.asarray(magnitudes)
  ratios = np.broadcast_to(np.asarray(ratio, np.float64), (len(magnitudes),))
  per_seed = [unravel(jnp.asarray(top_fraction_mask(m, float(r)))) for m, r in zip(magnitudes, ratios)]
  return jax.tree.map(lambda *leaves: np.stack([np.asarray(l) for l in leaves]), *per_seed)


def _fingerprint(params: Any) -> np.ndarray:
  """sum |theta| per seed in float64: tells apart the models a saliency file was made from."""
  leaves = jax.tree.leaves(params)
  return np.sum([np.abs(np.asarray(l, np.float64)).reshape(len(l), -1).sum(1) for l in leaves], axis=0)


def save_saliency(path: str, magnitudes: np.ndarray, forget: Sequence[np.ndarray], params: Any) -> None:
  """Writes |g| [S, P], each seed's forget positions and a fingerprint of the model, atomically."""
  arrays = {f"forget_{s}": np.asarray(f, np.int64) for s, f in enumerate(forget)}
  io.write_npz(path, magnitudes=np.asarray(magnitudes, np.float32),
               params_fingerprint=_fingerprint(params), **arrays)


def load_saliency(path: str, forget: Sequence[np.ndarray], params: Any) -> Optional[np.ndarray]:
  """|g| [S, P] saved for exactly these forget sets and this model, or None (absent or stale)."""
  if not os.path.exists(path):
    return None
  with np.load(path) as f:
    same_sets = all(f"forget_{s}" in f and np.array_equal(f[f"forget_{s}"], np.asarray(fs))
                    for s, fs in enumerate(forget))
    fingerprint = _fingerprint(params)
    # Another number of models (a grid of another size in the same folder) is another model.
    same_model = (f["params_fingerprint"].shape == fingerprint.shape
                  and np.allclose(f["params_fingerprint"], fingerprint, rtol=1e-6))
    if not (same_sets and same_model and len(f["magnitudes"]) == len(forget)):
      return None
    return f["magnitudes"]
