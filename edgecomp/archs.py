"""The registered architectures by name, readable without torch (the CLI's ``--arch`` choices).

``edgecomp.models`` registers the classes with ``@register_model``; this tuple names them so that
``edgecomp --help`` need not import torch. tests/test_models.py holds the two equal.
"""

from __future__ import annotations

ARCHS: tuple[str, ...] = ("gru", "lstm", "stgnn", "tcn")
