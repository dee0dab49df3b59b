"""Errors raised by edgecomp_runtime; every message is one line naming the file, key or column."""

from __future__ import annotations


class EdgecompRuntimeError(Exception):
    """Base class of every error this runtime raises on purpose."""


class ArtifactError(EdgecompRuntimeError, ValueError):
    """The artifact cannot be read: not a zip, corrupt, unsafe, or a malformed manifest."""


class ChecksumError(ArtifactError):
    """A file in the artifact does not match the size or sha256 its manifest lists."""


class FormatVersionError(ArtifactError):
    """The artifact's format_version is outside the range this runtime reads."""


class SignatureError(ArtifactError):
    """Trusted keys were given and the artifact is unsigned, signed by another key, or altered."""


class EngineUnavailableError(EdgecompRuntimeError):
    """No engine for the artifact's backend, or the engine's package is not installed."""


class InputError(EdgecompRuntimeError, ValueError):
    """A window given to predict cannot be used."""


class InputShapeError(InputError):
    """The window's shape is not [L, F] or [batch, L, F]."""


class InputDtypeError(InputError):
    """The window's dtype is not a real number type."""


class MissingValueError(InputError):
    """A window column misses more values than the imputation policy allows."""


class TimestampError(InputError):
    """A reading's timestamp lies too far ahead of the gateway's clock (or is in ms or µs)."""


class ModelOutputError(EdgecompRuntimeError):
    """The model produced non-finite output from a finite, in-range window: the model's fault."""
