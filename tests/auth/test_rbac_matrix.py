"""The RBAC matrix, generated from the contract and checked through the real server.

Every RPC of every registered service is called with an empty request as anonymous,
user, support, admin and service accounts: one holding every scope, one holding none,
and one per scope holding only it; each outcome must match the RPC's declared
``(gencharge.v1.access)`` rule:

- PUBLIC: never refused by the access layer;
- AUTHENTICATED: anonymous UNAUTHENTICATED, users and admins let through; a service
  account through iff the rule is ``service_self`` or names a ``service_scope`` it holds
  (PERMISSION_DENIED MISSING_SCOPE naming the scope; SERVICE_NOT_ALLOWED if the rule
  names none);
- SERVICE: anonymous UNAUTHENTICATED, users/admins PERMISSION_DENIED, a service account
  through iff it holds the rule's scope (MISSING_SCOPE otherwise);
- PERMISSION: anonymous UNAUTHENTICATED; others through iff their role has the action
  on the resource in the seeded Roles x RolePermissions x Permissions tables (read from
  the database, not from a list kept here).

"Let through" means the call did not fail with the access layer's UNAUTHENTICATED or
PERMISSION_DENIED: it may succeed or fail in the handler (INVALID_ARGUMENT, NOT_FOUND,
UNIMPLEMENTED, ...) since the request is empty. A few handlers refine an
AUTHENTICATED/PUBLIC rule themselves (e.g. Logout needs a session, so a service token
gets PERMISSION_DENIED "SESSION_ONLY"; Login with no credentials is UNAUTHENTICATED
"INVALID_CREDENTIALS"): such domain refusals are recognised by their ErrorInfo reason,
which the access layer never uses, and pass only where _domain_refusal() expects them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from sqlalchemy import text

from gencharge.v1 import access_pb2
from server.auth.access import ACTIONS, AccessRules
from server.auth.scopes import PAYMENTS_CONFIRM, RECHARGES_READ, RECHARGES_WRITE, SCOPES
from server.rpc.services import SERVICES
from tests.helpers.auth import Actor, create_admin, create_service, register_user
from tests.helpers.clock import HANG_SECONDS, FakeClock
from tests.helpers.rpc import ErrorDetails, details_of

#: Service accounts by the scopes they hold: "service" every scope, "service-unscoped"
#: none, "service-<scope>" only that one.
SERVICE_KINDS: dict[str, frozenset[str]] = {
    "service": frozenset(SCOPES),
    "service-unscoped": frozenset(),
    **{f"service-{scope}": frozenset({scope}) for scope in sorted(SCOPES)},
}
PRINCIPALS = ("anonymous", "user", "support", "admin", *SERVICE_KINDS)
AUDIENCE_NAMES: dict[int, str] = {
    access_pb2.AUDIENCE_PUBLIC: "PUBLIC",
    access_pb2.AUDIENCE_AUTHENTICATED: "AUTHENTICATED",
    access_pb2.AUDIENCE_PERMISSION: "PERMISSION",
    access_pb2.AUDIENCE_SERVICE: "SERVICE",
}
#: ErrorInfo reasons the access layer (server/auth/access.py) refuses with.
ACCESS_REASONS = frozenset(
    {
        "UNAUTHENTICATED",  # malformed authorization header
        "LOGIN_REQUIRED",
        "INVALID_TOKEN",
        "SESSION_ENDED",
        "SERVICE_ONLY",
        "MISSING_PERMISSION",
        "MISSING_SCOPE",
        "SERVICE_NOT_ALLOWED",
    }
)
#: Refusals a handler may give after the access layer let the call through, by reason:
#: bad credentials on a public login-type RPC (UNAUTHENTICATED), and user-only RPCs
#: called by an admin (PERMISSION_DENIED). Service accounts never meet these: the access
#: layer lets them into no RPC that is not meant for them.
CREDENTIAL_REFUSALS = frozenset(
    {
        "INVALID_CREDENTIALS",
        "MFA_FAILED",
        "INVALID_OTP",
        "INVALID_REFRESH_TOKEN",
        "REFRESH_TOKEN_REUSED",
        "INVALID_RESET_TOKEN",
    }
)
PRINCIPAL_KIND_REFUSALS = {
    "USER_ONLY": {"admin", "support"},
    # Only customers have wallets (and pay for recharges); services name a customer.
    "NO_WALLET": {"admin", "support"},
}
_REFUSED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
CHUNK = 24
#: A bound on a hang only: 24 concurrent calls on a busy machine may be slow.
CALL_TIMEOUT = HANG_SECONDS
#: Called last for each principal: it ends the session the other calls use.
LAST = "/gencharge.v1.AuthService/Logout"


@dataclass(frozen=True)
class Rpc:
    path: str
    audience: int
    resource: str
    action: str  # "read" | "write" | "edit" | "delete" | ""
    service_scope: str = ""
    service_self: bool = False

    @property
    def audience_name(self) -> str:
        return AUDIENCE_NAMES.get(self.audience, str(self.audience))


def _declared() -> tuple[list[Rpc], list[str]]:
    """Every contract RPC with its rule, and the problems (RPCs without a valid rule)."""
    pool = descriptor_pool.Default()
    rpcs: list[Rpc] = []
    problems: list[str] = []
    for spec in SERVICES:
        service = pool.FindServiceByName(spec.full_name)
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            options = method.GetOptions()
            if not options.HasExtension(access_pb2.access):
                problems.append(f"{path}: no (gencharge.v1.access) rule")
                continue
            rule = options.Extensions[access_pb2.access]
            if rule.audience not in AUDIENCE_NAMES:
                problems.append(f"{path}: audience {rule.audience} is unspecified/unknown")
                continue
            if rule.audience == access_pb2.AUDIENCE_PERMISSION:
                if not rule.resource or rule.action == access_pb2.ACTION_UNSPECIFIED:
                    problems.append(f"{path}: PERMISSION rule without resource and action")
                    continue
            elif rule.resource or rule.action != access_pb2.ACTION_UNSPECIFIED:
                problems.append(f"{path}: resource/action on a non-PERMISSION rule")
            if rule.audience == access_pb2.AUDIENCE_SERVICE and not rule.service_scope:
                problems.append(f"{path}: SERVICE rule without a service_scope")
            if rule.service_scope and rule.service_scope not in SCOPES:
                problems.append(f"{path}: unknown service_scope {rule.service_scope!r}")
            rpcs.append(
                Rpc(
                    path,
                    rule.audience,
                    rule.resource,
                    ACTIONS.get(rule.action, ""),
                    rule.service_scope,
                    rule.service_self,
                )
            )
    return rpcs, problems


RPCS, RULE_PROBLEMS = _declared()


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: ErrorDetails | None

    @property
    def reason(self) -> str:
        return self.details.reason if self.details else ""

    def __str__(self) -> str:
        if self.details is None:
            return "OK"
        return f"{self.code.name}/{self.reason}: {self.details.message}"


@dataclass(frozen=True)
class Expectation:
    allowed: bool
    code: grpc.StatusCode = grpc.StatusCode.OK
    reason: str = ""


# --------------------------------------------------------------------------- contract


def test_every_rpc_declares_a_valid_rule() -> None:
    assert not RULE_PROBLEMS, "\n".join(RULE_PROBLEMS)
    names = [spec.full_name for spec in SERVICES]
    rules = AccessRules(names)  # what the server builds at start-up; must not raise
    assert {rule.method for rule in rules} == {rpc.path for rpc in RPCS}
    for rpc in RPCS:
        rule = rules.get(rpc.path)
        assert rule is not None
        assert (
            rule.audience,
            rule.resource,
            rule.action,
            rule.service_scope,
            rule.service_self,
        ) == (
            rpc.audience,
            rpc.resource,
            rpc.action,
            rpc.service_scope,
            rpc.service_self,
        ), rpc.path
    total = sum(len(spec.method_names()) for spec in SERVICES)
    assert len(RPCS) == total > 50
    assert {rpc.audience for rpc in RPCS} == set(AUDIENCE_NAMES)


def test_anchor_rules_are_as_documented() -> None:
    by_path = {rpc.path: rpc for rpc in RPCS}
    plan = by_path["/gencharge.v1.PlanService/CreatePlan"]
    assert (plan.audience_name, plan.resource, plan.action) == ("PERMISSION", "Plans", "write")
    users = by_path["/gencharge.v1.AdminService/ListUsers"]
    assert (users.audience_name, users.resource, users.action) == ("PERMISSION", "Users", "read")
    for path in (
        "/gencharge.v1.WalletService/ConfirmPayment",
        "/gencharge.v1.RechargeService/BatchRecharge",
        "/gencharge.v1.RechargeService/BatchRechargeChunks",
    ):
        assert by_path[path].audience_name == "SERVICE", path
    assert by_path["/gencharge.v1.AuthService/GetMe"].audience_name == "AUTHENTICATED"
    assert by_path["/gencharge.v1.PlanService/ListPlanGroups"].audience_name == "PUBLIC"
    # What service accounts may call, written out: growing it is a decision, not a slip.
    open_to_services = {
        rpc.path.removeprefix("/gencharge.v1."): rpc.service_scope or "self"
        for rpc in RPCS
        if rpc.service_scope or rpc.service_self
    }
    assert open_to_services == {
        "WalletService/ConfirmPayment": PAYMENTS_CONFIRM,
        "RechargeService/QuoteRecharge": RECHARGES_WRITE,
        "RechargeService/Recharge": RECHARGES_WRITE,
        "RechargeService/BatchRecharge": RECHARGES_WRITE,
        "RechargeService/BatchRechargeChunks": RECHARGES_WRITE,
        "RechargeService/GetRecharge": RECHARGES_READ,
        "AuthService/GetMe": "self",
    }


# ------------------------------------------------------------------------ helpers


async def _permission_table(resources: Any) -> dict[int, dict[str, set[str]]]:
    """role_id -> resource -> allowed actions, from the seeded database."""
    sql = text(
        'SELECT rp.role_id, p.resource, p.read, p.write, p.edit, p."delete" '
        "FROM rolepermissions rp JOIN permissions p ON p.permission_id = rp.permission_id"
    )
    async with resources.engine.connect() as conn:
        rows = (await conn.execute(sql)).all()
    table: dict[int, dict[str, set[str]]] = {}
    for row in rows:
        allowed = table.setdefault(row.role_id, {}).setdefault(row.resource, set())
        for action in ("read", "write", "edit", "delete"):
            if getattr(row, action):
                allowed.add(action)
    return table


async def _role_id(resources: Any, kind: str, actor: Actor) -> int:
    queries = {
        "user": ("SELECT role_id FROM users WHERE email = :key", actor.email),
        "support": ("SELECT role_id FROM admins WHERE email = :key", actor.email),
        "admin": ("SELECT role_id FROM admins WHERE email = :key", actor.email),
        "service": ("SELECT role_id FROM service_accounts WHERE client_id = :key", actor.email),
    }
    sql, key = queries["service" if kind in SERVICE_KINDS else kind]
    async with resources.engine.connect() as conn:
        role_id = (await conn.execute(text(sql), {"key": key})).scalar_one()
    assert role_id is not None, f"{kind} has no role"
    return int(role_id)


async def _role_name(resources: Any, role_id: int) -> str:
    async with resources.engine.connect() as conn:
        sql = text("SELECT role_name FROM roles WHERE role_id = :id")
        return str((await conn.execute(sql, {"id": role_id})).scalar_one())


async def _make_principal(kind: str, channel: grpc.aio.Channel, resources: Any) -> Actor | None:
    if kind == "anonymous":
        return None
    if kind == "user":
        return await register_user(channel)
    if kind == "support":
        return await create_admin(channel, resources, role_name="Support")
    if kind == "admin":
        return await create_admin(channel, resources, role_name="Admin")
    if kind in SERVICE_KINDS:
        return await create_service(channel, resources, SERVICE_KINDS[kind])
    raise AssertionError(kind)


def _expect(rpc: Rpc, kind: str, permissions: dict[str, set[str]] | None) -> Expectation:
    if rpc.audience == access_pb2.AUDIENCE_PUBLIC:
        return Expectation(True)
    if kind == "anonymous":
        return Expectation(False, grpc.StatusCode.UNAUTHENTICATED, "LOGIN_REQUIRED")
    scopes = SERVICE_KINDS.get(kind)
    if rpc.audience == access_pb2.AUDIENCE_AUTHENTICATED:
        if scopes is None or rpc.service_self:
            return Expectation(True)
        if not rpc.service_scope:
            return Expectation(False, grpc.StatusCode.PERMISSION_DENIED, "SERVICE_NOT_ALLOWED")
        return _scoped(rpc, scopes)
    if rpc.audience == access_pb2.AUDIENCE_SERVICE:
        if scopes is not None:
            return _scoped(rpc, scopes)
        return Expectation(False, grpc.StatusCode.PERMISSION_DENIED, "SERVICE_ONLY")
    assert rpc.audience == access_pb2.AUDIENCE_PERMISSION
    assert permissions is not None
    if rpc.action in permissions.get(rpc.resource, set()):
        return Expectation(True)
    return Expectation(False, grpc.StatusCode.PERMISSION_DENIED, "MISSING_PERMISSION")


def _scoped(rpc: Rpc, scopes: frozenset[str]) -> Expectation:
    if rpc.service_scope in scopes:
        return Expectation(True)
    return Expectation(False, grpc.StatusCode.PERMISSION_DENIED, "MISSING_SCOPE")


async def _call(
    channel: grpc.aio.Channel, path: str, metadata: tuple[tuple[str, str], ...] | None
) -> Outcome:
    call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    try:
        await call(b"", metadata=metadata, timeout=CALL_TIMEOUT)
    except grpc.aio.AioRpcError as error:
        return Outcome(error.code(), details_of(error))
    return Outcome(grpc.StatusCode.OK, None)


def _domain_refusal(rpc: Rpc, kind: str, got: Outcome) -> bool:
    """A handler's refusal (not the access layer's) that the contract allows for."""
    if got.reason in ACCESS_REASONS:
        return False
    if got.code == grpc.StatusCode.UNAUTHENTICATED:
        return rpc.audience == access_pb2.AUDIENCE_PUBLIC and got.reason in CREDENTIAL_REFUSALS
    if got.code == grpc.StatusCode.PERMISSION_DENIED:
        return (
            rpc.audience == access_pb2.AUDIENCE_AUTHENTICATED
            and kind in PRINCIPAL_KIND_REFUSALS.get(got.reason, set())
        )
    return False


def _mismatch(rpc: Rpc, kind: str, expected: Expectation, got: Outcome) -> str | None:
    """None when ``got`` matches ``expected``, else a line describing the difference."""
    rule = f"{rpc.audience_name} {rpc.resource} {rpc.action} {rpc.service_scope}".rstrip()
    where = f"{kind:9} {rpc.path} [{rule}]"
    if expected.allowed:
        if got.code not in _REFUSED:
            return None
        if _domain_refusal(rpc, kind, got):
            return None  # the handler's own decision, after the access layer let it in
        return f"{where}: expected to be let through, got {got}"
    if got.code != expected.code or got.reason != expected.reason:
        return f"{where}: expected {expected.code.name}/{expected.reason}, got {got}"
    assert got.details is not None
    if expected.reason == "MISSING_PERMISSION":
        meta = got.details.metadata
        if meta.get("resource") != rpc.resource or meta.get("action") != rpc.action:
            return f"{where}: MISSING_PERMISSION metadata names {meta}"
    if expected.reason == "MISSING_SCOPE" and got.details.metadata != {"scope": rpc.service_scope}:
        return f"{where}: MISSING_SCOPE metadata names {got.details.metadata}"
    return None


async def _gather_chunked(jobs: list[Callable[[], Awaitable[Outcome]]]) -> list[Outcome]:
    results: list[Outcome] = []
    for start in range(0, len(jobs), CHUNK):
        results.extend(await asyncio.gather(*(job() for job in jobs[start : start + CHUNK])))
    return results


async def _run_matrix(kind: str, channel: grpc.aio.Channel, resources: Any) -> dict[str, Outcome]:
    actor = await _make_principal(kind, channel, resources)
    permissions: dict[str, set[str]] | None = None
    if actor is not None:
        table = await _permission_table(resources)
        permissions = table.get(await _role_id(resources, kind, actor), {})
    metadata = actor.metadata if actor is not None else None

    ordered = [rpc for rpc in RPCS if rpc.path != LAST] + [rpc for rpc in RPCS if rpc.path == LAST]
    assert len(ordered) == len(RPCS)
    first, last = ordered[:-1], ordered[-1]
    outcomes = await _gather_chunked(
        [lambda rpc=rpc: _call(channel, rpc.path, metadata) for rpc in first]  # type: ignore[misc]
    )
    outcomes.append(await _call(channel, last.path, metadata))

    problems = [
        line
        for rpc, got in zip(ordered, outcomes, strict=True)
        if (line := _mismatch(rpc, kind, _expect(rpc, kind, permissions), got)) is not None
    ]
    assert not problems, f"{len(problems)} RBAC mismatch(es):\n" + "\n".join(problems)
    # An empty request is bad input for most RPCs: never UNKNOWN or INTERNAL.
    crashed = [
        f"{rpc.path}: {got.code.name}"
        for rpc, got in zip(ordered, outcomes, strict=True)
        if got.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    ]
    assert not crashed, "bad input reached INTERNAL/UNKNOWN:\n" + "\n".join(crashed)
    return {rpc.path: got for rpc, got in zip(ordered, outcomes, strict=True)}


# ------------------------------------------------------------------------- matrix


@pytest.mark.parametrize("kind", PRINCIPALS)
async def test_rbac_matrix(kind: str, channel: grpc.aio.Channel, resources: Any) -> None:
    outcomes = await _run_matrix(kind, channel, resources)
    assert set(outcomes) == {rpc.path for rpc in RPCS}

    def refused(path: str, code: grpc.StatusCode, reason: str) -> bool:
        got = outcomes[f"/gencharge.v1.{path}"]
        return got.code == code and got.reason == reason

    def through(path: str) -> bool:
        return outcomes[f"/gencharge.v1.{path}"].code not in _REFUSED

    denied = grpc.StatusCode.PERMISSION_DENIED
    # Hand-written anchors, independent of the database-derived expectations above.
    if kind == "anonymous":
        for path in ("AuthService/GetMe", "AdminService/ListUsers", "PlanService/CreatePlan"):
            assert refused(path, grpc.StatusCode.UNAUTHENTICATED, "LOGIN_REQUIRED"), path
        assert refused(
            "WalletService/ConfirmPayment", grpc.StatusCode.UNAUTHENTICATED, "LOGIN_REQUIRED"
        )
        assert outcomes["/gencharge.v1.PlanService/ListPlanGroups"].code == grpc.StatusCode.OK
    if kind == "admin":
        assert through("PlanService/CreatePlan")
        assert through("AdminService/ListUsers")
        assert through("BackupService/CreateBackup")
        assert refused("WalletService/ConfirmPayment", denied, "SERVICE_ONLY")
    if kind == "support":
        assert refused("PlanService/CreatePlan", denied, "MISSING_PERMISSION")
        assert refused("AdminService/BlockUser", denied, "MISSING_PERMISSION")
        assert through("AdminService/ListUsers")
        assert refused("RechargeService/BatchRecharge", denied, "SERVICE_ONLY")
    if kind == "user":
        assert refused("AdminService/ListUsers", denied, "MISSING_PERMISSION")
        assert refused("PlanService/CreatePlan", denied, "MISSING_PERMISSION")
        assert refused("WalletService/ConfirmPayment", denied, "SERVICE_ONLY")
        assert refused("RechargeService/BatchRecharge", denied, "SERVICE_ONLY")
        assert through("AuthService/GetMe")
        assert outcomes["/gencharge.v1.AuthService/GetMe"].code == grpc.StatusCode.OK
    if kind in SERVICE_KINDS:
        # Whatever it holds: its own account, never a customer's wallet or an admin RPC.
        assert refused("AdminService/ListUsers", denied, "MISSING_PERMISSION")
        assert refused("WalletService/GetWallet", denied, "SERVICE_NOT_ALLOWED")
        assert refused("WalletService/GetTransaction", denied, "SERVICE_NOT_ALLOWED")
        assert refused("AuthService/Logout", denied, "SERVICE_NOT_ALLOWED")
        assert outcomes["/gencharge.v1.AuthService/GetMe"].code == grpc.StatusCode.OK
    if kind == "service":
        assert through("WalletService/ConfirmPayment")
        assert through("RechargeService/BatchRecharge")
        assert through("RechargeService/Recharge")
        assert through("RechargeService/GetRecharge")
    if kind == "service-unscoped":
        assert refused("WalletService/ConfirmPayment", denied, "MISSING_SCOPE")
        assert refused("RechargeService/Recharge", denied, "MISSING_SCOPE")
        assert refused("RechargeService/BatchRecharge", denied, "MISSING_SCOPE")
        assert refused("RechargeService/GetRecharge", denied, "MISSING_SCOPE")
    if kind == f"service-{RECHARGES_READ}":
        assert through("RechargeService/GetRecharge")
        assert refused("RechargeService/Recharge", denied, "MISSING_SCOPE")
        assert refused("WalletService/ConfirmPayment", denied, "MISSING_SCOPE")
    if kind == f"service-{PAYMENTS_CONFIRM}":
        assert through("WalletService/ConfirmPayment")
        assert refused("RechargeService/BatchRecharge", denied, "MISSING_SCOPE")
        assert refused("RechargeService/GetRecharge", denied, "MISSING_SCOPE")


async def test_seeded_roles_match_principals(channel: grpc.aio.Channel, resources: Any) -> None:
    """The principals the matrix uses really carry the roles it is named after."""
    expected = {
        "user": "User",
        "support": "Support",
        "admin": "Admin",
        "service": "Service",
        "service-unscoped": "Service",
    }
    actors = await asyncio.gather(*(_make_principal(kind, channel, resources) for kind in expected))
    for (kind, role_name), actor in zip(expected.items(), actors, strict=True):
        assert actor is not None
        role_id = await _role_id(resources, kind, actor)
        assert await _role_name(resources, role_id) == role_name, kind
    table = await _permission_table(resources)
    names = {await _role_name(resources, rid): perms for rid, perms in table.items()}
    # Sanity of the seed the matrix relies on (the matrix itself reads the tables).
    assert "write" in names["Admin"]["Plans"]
    assert names["Support"]["Users"] == {"read"}
    assert "Service" not in names


# ------------------------------------------------------ a revocation takes effect


async def _support_users_read_links(resources: Any) -> list[tuple[int, int, int]]:
    sql = text(
        "SELECT rp.id, rp.role_id, rp.permission_id FROM rolepermissions rp "
        "JOIN permissions p ON p.permission_id = rp.permission_id "
        "JOIN roles r ON r.role_id = rp.role_id "
        "WHERE r.role_name = 'Support' AND p.resource = 'Users' AND p.read"
    )
    async with resources.engine.connect() as conn:
        rows = (await conn.execute(sql)).all()
    return [(int(row.id), int(row.role_id), int(row.permission_id)) for row in rows]


async def test_permission_change_takes_effect_within_seconds(
    channel: grpc.aio.Channel, resources: Any, server_clock: FakeClock
) -> None:
    """A revocation, and then a grant, shows within ``auth_cache_seconds`` + 1 s: stepped
    on the server's clock (one call each way), not raced against real time."""
    limit = resources.settings.auth_cache_seconds + 1.0
    support = await create_admin(channel, resources, role_name="Support")
    path = "/gencharge.v1.AdminService/ListUsers"

    async def list_users() -> Outcome:
        return await _call(channel, path, support.metadata)

    def allowed(got: Outcome) -> bool:
        return got.code not in _REFUSED

    def denied(got: Outcome) -> bool:
        return got.code == grpc.StatusCode.PERMISSION_DENIED and got.reason == "MISSING_PERMISSION"

    before = await list_users()
    assert allowed(before), before

    links = await _support_users_read_links(resources)
    assert links, "the seed gives Support read access to Users"
    async with resources.engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM rolepermissions WHERE id = ANY(:ids)"),
            {"ids": [link[0] for link in links]},
        )
    # Until the matrix ages out it is still the cached one: the clock decides, not speed.
    cached = await list_users()
    assert allowed(cached), cached
    server_clock.advance(limit)
    revoked = await list_users()
    assert denied(revoked), f"still {revoked} {limit:.1f}s after the revocation"
    assert revoked.details is not None
    assert revoked.details.metadata == {"resource": "Users", "action": "read"}

    async with resources.engine.begin() as conn:
        for link_id, role_id, permission_id in links:
            await conn.execute(
                text(
                    "INSERT INTO rolepermissions (id, role_id, permission_id) "
                    "VALUES (:id, :role, :permission)"
                ),
                {"id": link_id, "role": role_id, "permission": permission_id},
            )
    cached = await list_users()
    assert denied(cached), cached
    server_clock.advance(limit)
    restored = await list_users()
    assert allowed(restored), f"still {restored} {limit:.1f}s after the grant"
