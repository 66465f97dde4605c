"""The benchmark suite: ``pytest suite/`` (suite/conftest.py), or :func:`run` from Python
(:mod:`suite.runner`)."""

from .runner import run

__all__ = ["run"]
