"""Public home of the credentials value object."""

from telemetryflow._credentials import Credentials
from telemetryflow._errors import CredentialsError

__all__ = ["Credentials", "CredentialsError"]
