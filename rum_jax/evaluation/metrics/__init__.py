"""Metrics as plug-ins: `METRICS`, the registry of every reported number (interface.py).

Every module of this package registers its metrics when the package is imported, so a new
metric is one new file here (docs/extending.md).
"""
from rum_jax.evaluation.metrics.interface import (BANK_INPUTS, DEFAULT_BANK_METRICS, DEFAULT_METRICS, LOGIT_INPUTS,
                                                  METRICS, BankOutputs, Metric, ModelOutputs, check_names, compute,
                                                  register)
from rum_jax.registry import import_modules

import_modules(__name__, __path__)

__all__ = ["BANK_INPUTS", "DEFAULT_BANK_METRICS", "DEFAULT_METRICS", "LOGIT_INPUTS", "METRICS", "BankOutputs", "Metric", "ModelOutputs", "check_names",
           "compute", "register"]
