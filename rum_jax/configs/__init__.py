"""The configs shipped with rum-jax: `from rum_jax.configs import rum_digits`, or on the command
line `--config=configs/rum_digits.py`.

An installed rum-jax holds them in this package (pyproject.toml installs the clone's top-level
configs/ folder as `rum_jax.configs`, so no top-level package `configs` can collide with a
user's own). In a clone they stay in configs/, where `--config=configs/<name>.py` names them,
and this package reads them from there.
"""
import os

__path__ = [os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")]
