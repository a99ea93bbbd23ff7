"""The unlearning methods of the RUM paper's study, one file each: a loss and/or a gradient transform.

Each module registers its method in `interface.UNLEARNING_METHODS` under the name users type
(`config.unlearn.method`), with the one `Method` interface (rum_jax/unlearning/interface.py):
  training methods  `phases(settings, ctx)` gives the losses the one training engine runs
                    every epoch (one phase for most methods; SCRUB: a max pass on the forget
                    set, then a min pass on the retain set); `prepare(ctx, states)` gives the
                    per-seed constants a step reads from `state.aux` (SCRUB's frozen teacher,
                    which examples get random labels, SalUn's saliency mask);
  one-shot methods  `apply(ctx, states)` edits the weights once (wfisher);
  retrain           training from scratch on the retain set with the original's settings.
`checks` gives the valid range of each method-specific setting (config validation); the
values themselves live in the config, `config.unlearn.<method>`. `common.py` holds what
several methods share. RUM, the meta-method over these, is rum_jax/unlearning/rum.py.

Every module here is imported with the package, so a new method is one new file here
(docs/extending.md).
"""
from rum_jax.registry import import_modules

import_modules(__name__, __path__)
