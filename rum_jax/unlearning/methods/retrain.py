"""retrain: train from scratch on the retain set with config.train, the reference every method
is measured against."""
from rum_jax.unlearning import runners
from rum_jax.unlearning.interface import Method, register

register(Method("retrain", runners.retrain_run, sgd_recipe=False, from_scratch=True,
                about="train from scratch on the retain set with config.train (the reference)",
                custom_settings=lambda config, workdir: config.train,
                custom_validate=lambda unlearn: None))  # trains like the original: config.train
