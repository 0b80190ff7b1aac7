"""Who is calling: the principal of the current RPC."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from server.core.errors import PermissionDenied, Unauthenticated

PrincipalKind = Literal["anonymous", "user", "admin", "service"]


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    #: user_id / admin_id (as text) or the service account's client_id.
    id: str = ""
    role_id: int | None = None
    role_name: str = ""
    session_id: str | None = None
    #: A service account's scopes: those its token carries that the account still holds
    #: (server.auth.scopes); empty for users and admins.
    scopes: frozenset[str] = frozenset()

    @property
    def subject(self) -> str:
        """The audit actor: "user:12", "admin:1", "service:billing", "anonymous"."""
        return "anonymous" if self.kind == "anonymous" else f"{self.kind}:{self.id}"

    @property
    def authenticated(self) -> bool:
        return self.kind != "anonymous"

    @property
    def numeric_id(self) -> int:
        return int(self.id)


ANONYMOUS = Principal("anonymous")

current_principal: ContextVar[Principal] = ContextVar("current_principal", default=ANONYMOUS)


def principal() -> Principal:
    return current_principal.get()


def customer_id(who: Principal, what: str) -> int:
    """The caller's ``user_id``, for what only customers have (``what``: "a wallet",
    "bills", ...): the one "customers only" rule. Admins and service accounts get
    PERMISSION_DENIED ``USER_ONLY``."""
    if who.kind != "user":
        raise PermissionDenied(f"only customers have {what}", reason="USER_ONLY")
    return who.numeric_id


def require_session_principal() -> Principal:
    """A user or an admin with a session (not a service token)."""
    who = principal()
    if not who.authenticated:
        raise Unauthenticated("login required")
    if who.session_id is None or who.kind not in ("user", "admin"):
        raise PermissionDenied("this needs a user or admin session", reason="SESSION_ONLY")
    return who
