"""Unlearning: the methods (one `Method` interface, registry `UNLEARNING_METHODS`), RUM, forget sets.

Importing the package registers every method (one file each in methods/, imported with that
package; rum.py) and forget-set kind.
"""
from rum_jax.unlearning import forget_kinds, methods, rum  # noqa: F401  (registers the entries)
from rum_jax.unlearning.interface import UNLEARNING_METHODS, Method, MethodContext, unlearn

__all__ = ["UNLEARNING_METHODS", "Method", "MethodContext", "unlearn"]
