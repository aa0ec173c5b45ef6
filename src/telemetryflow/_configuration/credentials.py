"""API key credentials: an immutable value object that never shows its secret."""

from __future__ import annotations

from dataclasses import dataclass, field

from telemetryflow._configuration.errors import CredentialsError

__all__ = ["KEY_ID_PREFIX", "KEY_SECRET_PREFIX", "Credentials", "mask_key_id"]

KEY_ID_PREFIX = "tfk_"
KEY_SECRET_PREFIX = "tfs_"  # noqa: S105 - a prefix, not a secret


def mask_key_id(key_id: str) -> str:
    """Show enough of a key id to recognise it: ``tfk_…abcd``."""
    if len(key_id) <= len(KEY_ID_PREFIX) + 4:
        return KEY_ID_PREFIX + "…"
    return f"{KEY_ID_PREFIX}…{key_id[-4:]}"


def has_control_chars(value: str) -> bool:
    """True if ``value`` holds a character that could split or smuggle a header."""
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)


def _check(value: object, field_name: str, prefix: str) -> None:
    if not isinstance(value, str):
        raise CredentialsError(f"{field_name} must be a string", field=field_name)
    if not value.startswith(prefix):
        raise CredentialsError(
            f"{field_name} must start with '{prefix}' (check the key you copied)",
            field=field_name,
        )
    if len(value) == len(prefix):
        raise CredentialsError(f"{field_name} has nothing after '{prefix}'", field=field_name)
    if has_control_chars(value) or value != value.strip():
        raise CredentialsError(
            f"{field_name} contains whitespace or control characters", field=field_name
        )


@dataclass(frozen=True)
class Credentials:
    """A TelemetryFlow API key: ``key_id`` (``tfk_…``) and ``key_secret`` (``tfs_…``).

    The secret is excluded from ``repr`` and equality messages so it cannot leak into
    logs or tracebacks by accident.

    Raises:
        CredentialsError: a key is not a string, lacks its prefix, or contains
            whitespace or control characters.
    """

    key_id: str
    key_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        _check(self.key_id, "key_id", KEY_ID_PREFIX)
        _check(self.key_secret, "key_secret", KEY_SECRET_PREFIX)

    @classmethod
    def create(cls, key_id: str, key_secret: str) -> Credentials:
        """Validate and create credentials."""
        return cls(key_id, key_secret)

    def authorization_header(self) -> str:
        """The ``Authorization`` header value: ``Bearer {key_id}:{key_secret}``."""
        return f"Bearer {self.key_id}:{self.key_secret}"

    def auth_headers(self) -> dict[str, str]:
        """Every header the collector accepts for authentication."""
        return {
            "Authorization": self.authorization_header(),
            "X-TelemetryFlow-Key-ID": self.key_id,
            "X-TelemetryFlow-Key-Secret": self.key_secret,
        }

    def equals(self, other: Credentials | None) -> bool:
        """True if ``other`` holds the same key id and secret."""
        return (
            other is not None
            and isinstance(other, Credentials)
            and self.key_id == other.key_id
            and self.key_secret == other.key_secret
        )

    @property
    def masked_key_id(self) -> str:
        """The key id as safe to print: ``tfk_…abcd``."""
        return mask_key_id(self.key_id)

    def __repr__(self) -> str:
        return f"Credentials(key_id={self.masked_key_id!r}, key_secret='***')"

    __str__ = __repr__
