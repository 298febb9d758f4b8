"""A simulated Microsoft identity platform (Entra ID v2.0) and Microsoft Graph on 127.0.0.1, for tests and
the local stack."""

from .scenarios import Behaviour, Tenant, User, World, load
from .simulator import DEFAULT_CLIENT_ID, IdentitySimulator
from .state import RegisteredApp, SeenRequest

__all__ = [
    "DEFAULT_CLIENT_ID",
    "Behaviour",
    "IdentitySimulator",
    "RegisteredApp",
    "SeenRequest",
    "Tenant",
    "User",
    "World",
    "load",
]
