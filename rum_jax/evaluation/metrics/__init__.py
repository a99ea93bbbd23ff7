"""Metrics as plug-ins: `METRICS`, the registry of every reported number (interface.py).

Every module of this package registers its metrics when the package is imported, so a new
metric is one new file here (docs/extending.md).
"""
import importlib
import pkgutil

from rum_jax.evaluation.metrics.interface import (BANK_INPUTS, DEFAULT_BANK_METRICS, DEFAULT_METRICS, LOGIT_INPUTS,
                                                  METRICS, BankOutputs, Metric, ModelOutputs, check_names, compute,
                                                  register)

for _module in pkgutil.iter_modules(__path__):
  if _module.name != "interface":
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["BANK_INPUTS", "DEFAULT_BANK_METRICS", "DEFAULT_METRICS", "LOGIT_INPUTS", "METRICS", "BankOutputs", "Metric", "ModelOutputs", "check_names",
           "compute", "register"]
