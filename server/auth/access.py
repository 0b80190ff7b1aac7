"""Authentication and authorisation decisions for the access interceptor.

- :class:`AccessRules`: each RPC's rule, read once from the contract's
  ``(gencharge.v1.access)`` method option. A method without a rule, or with a rule that
  is not consistent (an unknown service scope, a SERVICE rule naming none, ...), is a
  start-up error.
- :class:`Authenticator`: bearer token -> :class:`Principal`, checking that the session
  (or the service account) is still active, and that a service token was not issued
  before the account's ``tokens_valid_after`` (set by a restore). Session and
  service-account states are cached for ``auth_cache_seconds`` (a revocation elsewhere
  takes effect within that time on every replica; in the revoking process it is
  immediate).
- :class:`PermissionMatrix`: Roles x Permissions x RolePermissions, cached the same
  way, so a grant or revocation takes effect within seconds without a restart.
- :func:`authorize`: the decision. Service accounts pass an AUTHENTICATED or SERVICE
  rule only with the rule's ``service_scope`` (:mod:`server.auth.scopes`), checked on
  the principal's scopes: those of the token that the account still holds, so the check
  costs no database round trip beyond the cached account state.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from google.protobuf import descriptor_pool

from gencharge.v1 import access_pb2
from server.auth import queries
from server.auth.principal import ANONYMOUS, Principal
from server.auth.rbac_queries import load_permission_rows
from server.auth.scopes import SCOPES
from server.auth.tokens import AccessClaims, TokenError, TokenService
from server.core.db import Database
from server.core.errors import PermissionDenied, Unauthenticated

K = TypeVar("K")
V = TypeVar("V")

ACTIONS = {
    access_pb2.ACTION_READ: "read",
    access_pb2.ACTION_WRITE: "write",
    access_pb2.ACTION_EDIT: "edit",
    access_pb2.ACTION_DELETE: "delete",
}
READ_PREFIXES = ("Get", "List", "Quote")
#: Principals kept for reuse (one per token seen within the claims cache's lifetime).
_MAX_PRINCIPALS = 10_000


@dataclass(frozen=True)
class Rule:
    method: str  # "/gencharge.v1.PlanService/ListPlans"
    audience: int
    resource: str
    action: str  # "" unless audience is PERMISSION
    #: The scope a service account needs ("" : service accounts may not call it).
    service_scope: str = ""
    #: Every service account may call it, without a scope (GetMe).
    service_self: bool = False
    #: Reads are Get*, List* and Quote*; every other RPC changes something (derived from
    #: the method once: every call asks).
    mutating: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = self.method.rsplit("/", 1)[1]
        object.__setattr__(self, "mutating", not name.startswith(READ_PREFIXES))

    @property
    def public(self) -> bool:
        return self.audience == access_pb2.AUDIENCE_PUBLIC


class AccessRules:
    def __init__(self, service_names: Iterable[str]) -> None:
        self._rules: dict[str, Rule] = {}
        pool = descriptor_pool.Default()
        for service_name in service_names:
            service = pool.FindServiceByName(service_name)
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                options = method.GetOptions()
                if not options.HasExtension(access_pb2.access):
                    raise RuntimeError(f"{path} declares no (gencharge.v1.access) rule")
                rule = options.Extensions[access_pb2.access]
                if rule.audience == access_pb2.AUDIENCE_UNSPECIFIED:
                    raise RuntimeError(f"{path} has an unspecified access audience")
                problem = service_rule_problem(rule)
                if problem:
                    raise RuntimeError(f"{path}: {problem}")
                self._rules[path] = Rule(
                    method=path,
                    audience=rule.audience,
                    resource=rule.resource,
                    action=ACTIONS.get(rule.action, ""),
                    service_scope=rule.service_scope,
                    service_self=rule.service_self,
                )

    def get(self, method: str) -> Rule | None:
        return self._rules.get(method)

    def __iter__(self) -> Any:
        return iter(self._rules.values())


def service_rule_problem(rule: access_pb2.AccessRule) -> str | None:
    """What is wrong with a rule's service part (None when it is consistent)."""
    scope, audience = rule.service_scope, rule.audience
    if scope and scope not in SCOPES:
        return f"unknown service_scope {scope!r} (known: {', '.join(sorted(SCOPES))})"
    if audience == access_pb2.AUDIENCE_SERVICE and not scope:
        return "an AUDIENCE_SERVICE rule must name its service_scope"
    if scope and audience not in (access_pb2.AUDIENCE_SERVICE, access_pb2.AUDIENCE_AUTHENTICATED):
        return "service_scope is only for AUDIENCE_SERVICE and AUDIENCE_AUTHENTICATED rules"
    if rule.service_self and (audience != access_pb2.AUDIENCE_AUTHENTICATED or scope):
        return "service_self is only for AUDIENCE_AUTHENTICATED rules without a service_scope"
    return None


class TtlCache(Generic[K, V]):
    """A small per-process cache whose entries live ``ttl`` seconds."""

    def __init__(
        self,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_items: int = 100_000,
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._max_items = max_items
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None or self._clock() - item[0] > self._ttl:
            return None
        return item[1]

    def put(self, key: K, value: V) -> None:
        if len(self._items) >= self._max_items:
            self._items.clear()
        self._items[key] = (self._clock(), value)

    def discard(self, key: K) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


@dataclass(frozen=True)
class _SessionState:
    active: bool
    role_id: int | None
    role_name: str
    #: A service account's scopes as stored now (sessions have none).
    scopes: frozenset[str] = frozenset()
    #: A service account's token cut-off, truncated to its whole second: tokens issued
    #: (``iat``) before it are refused. None: no cut-off (and always for sessions).
    tokens_valid_after: datetime | None = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _whole_second(moment: datetime | None) -> datetime | None:
    """A cut-off compared with ``iat``, which has whole seconds: a token issued in the
    cut-off's own second is kept (whether just before or just after it), so a token
    issued right after a cut-off always works; one issued in an earlier second never
    does."""
    return None if moment is None else moment.replace(microsecond=0)


class Authenticator:
    """``clock`` (monotonic seconds) ages the caches; ``now`` (aware datetimes) is what
    token and session expiries are compared with."""

    def __init__(
        self,
        db: Database,
        tokens: TokenService,
        cache_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._db = db
        self._tokens = tokens
        self._now = now
        self._sessions: TtlCache[str, _SessionState] = TtlCache(cache_seconds, clock)
        self._services: TtlCache[str, _SessionState] = TtlCache(cache_seconds, clock)
        self._claims: TtlCache[str, AccessClaims] = TtlCache(60.0, clock, max_items=10_000)
        #: token -> the principal last built from these very claims and account state
        #: (both cached objects: a new one of either builds a new principal).
        self._principals: dict[str, tuple[AccessClaims, _SessionState, Principal]] = {}

    def _verified(self, token: str) -> AccessClaims:
        """Verify a token, or reuse the claims of the same token verified before.

        Verifying a signature costs more than the rest of a cheap RPC; internal callers
        send one token thousands of times. A cached token is only reused until it
        expires, and revocation is still checked on every call (session/service state).
        """
        cached = self._claims.get(token)
        if cached is not None and cached.expires_at > self._now():
            return cached
        try:
            claims = self._tokens.verify(token)
        except TokenError as exc:
            raise Unauthenticated(
                "invalid access token", reason="INVALID_TOKEN", metadata={"cause": exc.reason}
            ) from None
        self._claims.put(token, claims)
        return claims

    def forget_session(self, session_id: str) -> None:
        self._sessions.discard(session_id)

    def forget_sessions(self, session_ids: Iterable[uuid.UUID | str]) -> None:
        """Drop ended sessions from this process's cache (after their change commits)."""
        for session_id in session_ids:
            self.forget_session(str(session_id))

    def forget_all(self) -> None:
        """Drop every cached session and service-account state (after a restore): the
        next call of each reads what the database holds now."""
        self._sessions.clear()
        self._services.clear()

    def forget_service(self, client_id: str) -> None:
        """Drop a service account's cached state (after its change commits: disabled,
        scopes replaced), so this process sees the change on the next call."""
        self._services.discard(client_id)

    async def authenticate(self, authorization: str | None) -> Principal:
        if authorization is None:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authorization must be 'Bearer <access token>'")
        claims = self._verified(token)
        if claims.principal_type == "service":
            state = await self._service_state(claims.principal_id)
        elif claims.session_id is not None:
            state = await self._session_state(claims.session_id)
        else:
            raise Unauthenticated("invalid access token", reason="INVALID_TOKEN")
        if not state.active:
            raise Unauthenticated("the session has ended; log in again", reason="SESSION_ENDED")
        if state.tokens_valid_after is not None and claims.issued_at < state.tokens_valid_after:
            raise Unauthenticated(
                "this service token was retired; issue a new one", reason="SESSION_ENDED"
            )
        return self._principal(token, claims, state)

    def _principal(self, token: str, claims: AccessClaims, state: _SessionState) -> Principal:
        built = self._principals.get(token)
        if built is not None and built[0] is claims and built[1] is state:
            return built[2]
        who = Principal(
            kind=claims.principal_type,  # type: ignore[arg-type]
            id=claims.principal_id,
            role_id=state.role_id,
            role_name=state.role_name,
            session_id=claims.session_id,
            # What the token was issued with, less what the account has lost since.
            scopes=claims.scopes & state.scopes,
        )
        if len(self._principals) >= _MAX_PRINCIPALS:
            self._principals.clear()
        self._principals[token] = (claims, state, who)
        return who

    async def _session_state(self, session_id: str) -> _SessionState:
        cached = self._sessions.get(session_id)
        if cached is not None:
            return cached
        try:
            sid = uuid.UUID(session_id)
        except ValueError:
            raise Unauthenticated("invalid access token", reason="INVALID_TOKEN") from None
        async with self._db.read_only() as conn:
            row = await queries.session_state(conn, sid)
        if row is None:
            state = _SessionState(False, None, "")
        else:
            state = _SessionState(
                active=bool(row.is_active) and row.refresh_token_expires_at > self._now(),
                role_id=row.role_id,
                role_name=row.role_name or "",
            )
        self._sessions.put(session_id, state)
        return state

    async def _service_state(self, client_id: str) -> _SessionState:
        cached = self._services.get(client_id)
        if cached is not None:
            return cached
        async with self._db.read_only() as conn:
            row = await queries.service_account_by_client_id(conn, client_id)
        if row is None:
            state = _SessionState(False, None, "")
        else:
            state = _SessionState(
                row.status == "active",
                row.role_id,
                row.role_name or "",
                frozenset(row.scopes or ()),
                _whole_second(row.tokens_valid_after),
            )
        self._services.put(client_id, state)
        return state


class PermissionMatrix:
    """role_id -> resource -> set of allowed actions, reloaded every ``ttl`` seconds."""

    def __init__(
        self, db: Database, ttl: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._db = db
        self._ttl = ttl
        self._clock = clock
        self._loaded_at = float("-inf")
        self._matrix: dict[int, dict[str, set[str]]] = {}
        self._lock = asyncio.Lock()

    async def _current(self) -> dict[int, dict[str, set[str]]]:
        if self._clock() - self._loaded_at <= self._ttl:
            return self._matrix
        async with self._lock:
            if self._clock() - self._loaded_at > self._ttl:
                async with self._db.read_only() as conn:
                    rows = await load_permission_rows(conn)
                matrix: dict[int, dict[str, set[str]]] = {}
                for row in rows:
                    allowed = matrix.setdefault(row.role_id, {}).setdefault(row.resource, set())
                    for action in ("read", "write", "edit", "delete"):
                        if getattr(row, action):
                            allowed.add(action)
                self._matrix = matrix
                self._loaded_at = self._clock()
        return self._matrix

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def allows(self, role_id: int | None, resource: str, action: str) -> bool:
        if role_id is None:
            return False
        matrix = await self._current()
        return action in matrix.get(role_id, {}).get(resource, set())


async def authorize(rule: Rule, who: Principal, matrix: PermissionMatrix) -> None:
    """Raise UNAUTHENTICATED / PERMISSION_DENIED unless ``who`` may call ``rule``."""
    if rule.public:
        return
    if not who.authenticated:
        raise Unauthenticated("login required", reason="LOGIN_REQUIRED")
    if rule.audience == access_pb2.AUDIENCE_AUTHENTICATED:
        if who.kind == "service":
            _require_scope(rule, who)
        return
    if rule.audience == access_pb2.AUDIENCE_SERVICE:
        if who.kind != "service":
            raise PermissionDenied("only service accounts may call this", reason="SERVICE_ONLY")
        _require_scope(rule, who)
        return
    if not await matrix.allows(who.role_id, rule.resource, rule.action):
        raise PermissionDenied(
            f"role {who.role_name or '?'} lacks {rule.action} on {rule.resource}",
            reason="MISSING_PERMISSION",
            metadata={"resource": rule.resource, "action": rule.action},
        )


def _require_scope(rule: Rule, who: Principal) -> None:
    """A service account may call ``rule`` only with its scope (or if it is self-only)."""
    if rule.service_self:
        return
    if not rule.service_scope:
        raise PermissionDenied(
            "service accounts may not call this RPC", reason="SERVICE_NOT_ALLOWED"
        )
    if rule.service_scope not in who.scopes:
        raise PermissionDenied(
            f"this service account lacks the scope {rule.service_scope!r}",
            reason="MISSING_SCOPE",
            metadata={"scope": rule.service_scope},
        )
