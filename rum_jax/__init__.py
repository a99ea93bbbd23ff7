"""rum-jax: memorization-aware machine unlearning in JAX/Flax (one-shot and continual).

Layers, each importing only the ones below it (docs/architecture.md):
  commands   `rum_jax.commands`: one function per command line (validate once, lock the work
             directory, call one pipeline); `rum_jax.config_validation`, `rum_jax.runtime`
  pipelines  `rum_jax.pipelines`: training, memorization, unlearning, evaluation, study,
             continual: the runs that read and write work directories
  library    data, models, training (the engine), memorization, unlearning, continual,
             evaluation; `results`, `workdir`, `io`
  pure       formulas as functions of arrays (losses, projections, metrics), with
             `registry` and `checks`
Importing rum_jax has no side effects; the command lines set the process up (`runtime`).
"""

from rum_jax.provenance import VERSION as __version__  # noqa: F401  (a string; importing has no side effects)
