"""Credentials: validation, headers, equality, and a secret that never shows."""

from __future__ import annotations

import dataclasses

import pytest

from telemetryflow.domain.credentials import Credentials, CredentialsError

SECRET = "tfs_very_secret_value_123"


def test_create_and_headers() -> None:
    creds = Credentials.create("tfk_abc", SECRET)
    assert creds.authorization_header() == f"Bearer tfk_abc:{SECRET}"
    assert creds.auth_headers() == {
        "Authorization": f"Bearer tfk_abc:{SECRET}",
        "X-TelemetryFlow-Key-ID": "tfk_abc",
        "X-TelemetryFlow-Key-Secret": SECRET,
    }


@pytest.mark.parametrize(
    ("key_id", "key_secret", "field"),
    [
        ("abc", SECRET, "key_id"),
        ("tfk_", SECRET, "key_id"),
        ("tfk_abc", "wrongprefix_xyz", "key_secret"),
        ("tfk_abc", "tfs_a\r\nInjected: 1", "key_secret"),
        ("tfk_a\x00b", SECRET, "key_id"),
        ("tfk_abc ", SECRET, "key_id"),
    ],
)
def test_invalid_keys_name_the_field_but_not_the_value(
    key_id: str, key_secret: str, field: str
) -> None:
    with pytest.raises(CredentialsError) as info:
        Credentials(key_id, key_secret)
    assert info.value.field == field
    assert field in str(info.value)
    assert key_secret not in str(info.value) or key_secret == SECRET
    assert "Injected" not in str(info.value)


def test_non_string_is_rejected() -> None:
    with pytest.raises(CredentialsError):
        Credentials("tfk_abc", 123)  # type: ignore[arg-type]


def test_immutable() -> None:
    creds = Credentials("tfk_abc", SECRET)
    with pytest.raises(dataclasses.FrozenInstanceError):
        creds.key_id = "tfk_other"  # type: ignore[misc]


def test_equals() -> None:
    a = Credentials("tfk_abc", SECRET)
    assert a.equals(Credentials("tfk_abc", SECRET))
    assert not a.equals(Credentials("tfk_abc", "tfs_other"))
    assert not a.equals(None)


def test_secret_never_in_repr_or_str() -> None:
    creds = Credentials("tfk_abcdefgh1234", SECRET)
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert SECRET not in text
        assert "tfk_…1234" in text
