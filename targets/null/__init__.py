"""The null backend: the reference example of the target template (see README.md)."""

from .target import NullTarget

__all__ = ["NullTarget"]
