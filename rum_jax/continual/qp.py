"""The box-constrained quadratic program behind GEM's gradient projection.

GEM (Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for Continual Learning", NeurIPS,
eq. 11-12 and the `project2cone2` function of facebookresearch/GradientEpisodicMemory) solves
the dual of the projection onto the cone of allowed gradients, a QP in one variable per
constraint:

  min_v  0.5 v'Pv + q'v   subject to   v >= lower.

This is the only module that imports jaxopt: the solver sits behind `solve_gem_dual`, so it
can be swapped without touching the callers. jaxopt's `BoxOSQP` (ADMM, Stellato et al. 2020
"OSQP", with a direct LU solve of the small T x T system) is used rather than its
coordinate-descent `BoxCDQP`: gradients of different tasks are often strongly correlated,
which makes coordinate descent need thousands of sweeps, while ADMM on the Jacobi-scaled
problem below converges in tens of iterations to ~1e-5 relative accuracy in float32.
"""
import functools
import warnings

import jax
import jax.numpy as jnp

from rum_jax import optional


@functools.lru_cache(maxsize=None)
def _solver():
  """The jaxopt solver, built on first use so that only GEM needs jaxopt installed."""
  with warnings.catch_warnings():
    # jaxopt 0.8.5 warns on import that it is no longer maintained. The warning concerns the
    # package's future, not this use; silence only that message, only here.
    warnings.filterwarnings(
        "ignore", message="JAXopt is no longer maintained", category=DeprecationWarning)
    jaxopt = optional.require("jaxopt", "GEM's gradient projection (the QP solver)")
  # tol is ADMM's stopping threshold on the sup-norm of the primal and dual residuals. The
  # problem is rescaled below so that P has a unit diagonal and max(|q|, |lower|) = 1, which
  # makes this absolute threshold a relative one. maxiter caps the rare slow instance (nearly
  # collinear constraint rows); in tests the solution then still matches an exact active-set
  # solver to ~1e-4 relative.
  return jaxopt.BoxOSQP(eq_qp_solve="lu", tol=1e-6, maxiter=500)


def solve_gem_dual(P: jax.Array, q: jax.Array, lower: jax.Array,
                   active: jax.Array) -> jax.Array:
  """Solves min_v 0.5 v'Pv + q'v s.t. v >= lower over the `active` coordinates only.

  The GEM dual (Lopez-Paz & Ranzato 2017, eq. 12; `project2cone2`) has one row per
  constraint task; here rows are padded to a fixed count T so the function compiles once.
  Inactive rows are removed from the problem: their entries of P, q and lower are ignored,
  they do not couple to the active rows, and their v is exactly 0. Works under `jax.jit`
  and `jax.vmap`.

  Internally the problem is solved in the variable u = v / (c s) with s_k = 1/sqrt(P_kk),
  i.e. with P rescaled to a unit diagonal (Jacobi scaling, which ADMM needs to converge
  quickly) and q, lower divided by c = max_k(|s_k q_k|, |lower_k / s_k|), so the solver's
  tolerance is relative to the size of the problem's data.

  Args:
    P: [T, T] symmetric matrix, positive definite on the active rows (GEM adds eps I).
    q: [T] linear term.
    lower: [T] (or scalar) finite lower bounds on v.
    active: [T] bool, True for the rows that take part in the problem.

  Returns:
    v: [T], the minimiser on the active rows and 0 on the inactive ones.
  """
  active = jnp.asarray(active, bool)
  dtype = jnp.result_type(P, q)
  lower = jnp.broadcast_to(jnp.asarray(lower, dtype), active.shape)
  both_active = active[:, None] & active[None, :]
  # Inactive rows become decoupled identity rows fixed to 0 by the bounds l = u = 0.
  P = jnp.where(both_active, P, 0.0) + jnp.diag(jnp.where(active, 0.0, 1.0).astype(dtype))
  q = jnp.where(active, q, 0.0)
  lower = jnp.where(active, lower, 0.0)
  upper = jnp.where(active, jnp.inf, 0.0).astype(dtype)

  s = jax.lax.rsqrt(jnp.diag(P))
  c = jnp.maximum(jnp.max(jnp.abs(q * s)), jnp.max(jnp.abs(lower / s)))
  c = jnp.where(c > 0, c, 1.0)  # q = lower = 0: the solution is v = 0 at any scale.
  P_scaled = P * s[:, None] * s[None, :]
  # Divisions by c are written as products with 1/c: XLA rewrites x / c as x * (1/c) in some
  # compilations and not in others (a program partitioned over several devices vs one), and
  # the two round differently, so a seed's projection would depend on the device count.
  to_u = 1.0 / (s * c)
  lower_scaled = lower * to_u
  solution = _solver().run(
      params_obj=(P_scaled, q * s * (1.0 / c)),
      params_eq=jnp.eye(active.shape[0], dtype=dtype),
      params_ineq=(lower_scaled, upper * to_u)).params
  u = solution.primal[0]
  # ADMM meets the bounds only to within its tolerance: clip onto the box, which is exact.
  u = jnp.clip(u, lower_scaled, upper)
  return jnp.where(active, u * s * c, 0.0).astype(dtype)
