"""The one exception tree of TelemetryFlow.

::

    TelemetryFlowError(Exception)
    ├── NotInitializedError            client used before initialize()
    ├── ConfigError(ValueError)        an invalid TelemetryConfig
    │   └── BuilderError               the builder cannot produce a valid config
    └── CredentialsError(ValueError)   a malformed key id or key secret

Configuration errors carry the field (or environment variable) they are about in
``field`` so tools can point at it. No error message ever contains a key secret.
Recording calls never raise any of these: they warn and drop instead.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BuilderError",
    "ConfigError",
    "CredentialsError",
    "NotInitializedError",
    "TelemetryFlowError",
]


class TelemetryFlowError(Exception):
    """Base class of every error the SDK raises."""


class NotInitializedError(TelemetryFlowError):
    """The client was used before ``initialize()`` (or after ``shutdown()``)."""


class ConfigError(TelemetryFlowError, ValueError):
    """A configuration value is invalid.

    ``problems`` lists every problem found, so one run shows them all.
    """

    def __init__(
        self, message: str, *, field: str | None = None, problems: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.field = field
        self.problems: tuple[str, ...] = tuple(problems) or (message,)


class BuilderError(ConfigError):
    """The builder was asked for something it cannot build, or is missing a value."""


class CredentialsError(TelemetryFlowError, ValueError):
    """A key id or key secret is malformed. Names the field, never the secret."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
