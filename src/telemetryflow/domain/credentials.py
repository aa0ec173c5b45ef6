"""Public home of the credentials value object."""

from telemetryflow._configuration.credentials import Credentials
from telemetryflow._configuration.errors import CredentialsError

__all__ = ["Credentials", "CredentialsError"]
