"""The token rejection matrix, through the real server.

A real access token issued to a registered user is the template: each case copies its
header and claims and changes one thing (algorithm, key, kid, aud, iss, times, typ),
or sends something that is not an access token at all, or a real token whose session
or account has since ended. Every case must be UNAUTHENTICATED on an AUTHENTICATED RPC
(AuthService.GetMe) and on a PUBLIC one (PlanService.ListPlanGroups: a bad token is
refused even where no token is needed), and the error must not echo the token.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from gencharge.v1 import auth_service_pb2, plan_service_pb2
from server.auth.keys import jwk_thumbprint, public_jwk
from tests.helpers.auth import Actor, auth_stub, create_service, register_user
from tests.helpers.clock import HANG_SECONDS, FakeClock
from tests.helpers.rpc import ErrorDetails, details_of

GET_ME = "/gencharge.v1.AuthService/GetMe"
LIST_PLAN_GROUPS = "/gencharge.v1.PlanService/ListPlanGroups"
RPCS = {
    GET_ME: auth_service_pb2.GetMeRequest(),
    LIST_PLAN_GROUPS: plan_service_pb2.ListPlanGroupsRequest(),
}
HOUR = 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


@dataclass
class Template:
    """A real access token taken apart, plus what is needed to forge variants of it."""

    token: str
    header: dict[str, Any]
    claims: dict[str, Any]
    sign_key: Ed25519PrivateKey  # the server's real signing key
    kid: str

    def claims_with(self, **changes: Any) -> dict[str, Any]:
        claims = dict(self.claims)
        claims.update(changes)
        return claims

    def eddsa(
        self,
        claims: dict[str, Any] | None = None,
        *,
        key: Ed25519PrivateKey | None = None,
        **header: Any,
    ) -> str:
        headers = {"kid": self.kid, "typ": self.header["typ"], **header}
        headers = {name: value for name, value in headers.items() if value is not None}
        return jwt.encode(
            claims if claims is not None else self.claims,
            key or self.sign_key,
            algorithm="EdDSA",
            headers=headers,
        )

    def unsigned(self) -> str:
        header = {"alg": "none", "typ": self.header["typ"], "kid": self.kid}
        return f"{_b64(_json(header))}.{_b64(_json(self.claims))}."

    def hs256(self, secret: bytes) -> str:
        header = {"alg": "HS256", "typ": self.header["typ"], "kid": self.kid}
        signing_input = f"{_b64(_json(header))}.{_b64(_json(self.claims))}"
        mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"

    def es256(self) -> str:
        return jwt.encode(
            self.claims,
            ec.generate_private_key(ec.SECP256R1()),
            algorithm="ES256",
            headers={"kid": self.kid, "typ": self.header["typ"]},
        )

    def tampered(self, **changes: Any) -> str:
        """The real signature over the original claims, with the claims changed."""
        head, _, signature = self.token.split(".")
        return f"{head}.{_b64(_json(self.claims_with(**changes)))}.{signature}"


@dataclass(frozen=True)
class Case:
    name: str
    authorization: str
    reason: str  # ErrorInfo reason
    cause: str | None = None  # ErrorInfo metadata "cause" (TokenError.reason)


def _bearer(token: str) -> str:
    return f"Bearer {token}"


def _forged_cases(template: Template, refresh_token: str) -> list[Case]:
    now = int(time.time())
    public = template.sign_key.public_key()
    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    other = Ed25519PrivateKey.generate()
    other_kid = jwk_thumbprint(other.public_key())
    invalid = "INVALID_TOKEN"
    cases = [
        ("alg none", template.unsigned(), "algorithm_not_allowed"),
        ("HS256 keyed with the public PEM", template.hs256(public_pem), "algorithm_not_allowed"),
        (
            "HS256 keyed with the raw public key",
            template.hs256(public_raw),
            "algorithm_not_allowed",
        ),
        ("ES256 with a fresh key", template.es256(), "algorithm_not_allowed"),
        ("EdDSA, another key, the real kid", template.eddsa(key=other), "bad_signature"),
        (
            "EdDSA, another key embedded as jwk",
            template.eddsa(key=other, jwk=public_jwk(other.public_key(), template.kid)),
            "bad_signature",
        ),
        ("real signature, role changed", template.tampered(role="Admin"), "bad_signature"),
        ("unknown kid", template.eddsa(key=other, kid=other_kid), "unknown_kid"),
        ("no kid", template.eddsa(kid=None), "unknown_kid"),
        (
            "wrong aud",
            template.eddsa(template.claims_with(aud="another-api")),
            "wrong_audience",
        ),
        (
            "aud as a list with ours and another",
            template.eddsa(template.claims_with(aud=[template.claims["aud"], "another-api"])),
            "wrong_audience",
        ),
        ("wrong iss", template.eddsa(template.claims_with(iss="evil-issuer")), "wrong_issuer"),
        (
            "expired",
            template.eddsa(
                template.claims_with(iat=now - 2 * HOUR, nbf=now - 2 * HOUR, exp=now - HOUR)
            ),
            "expired",
        ),
        (
            "nbf in the future",
            template.eddsa(template.claims_with(nbf=now + HOUR, exp=now + 2 * HOUR)),
            "not_yet_valid",
        ),
        ("typ refresh", template.eddsa(template.claims_with(typ="refresh")), "wrong_token_type"),
        (
            "user token claiming a service scope, real key",
            template.eddsa(template.claims_with(scope="payments.confirm")),
            "malformed",
        ),
        ("header typ JWT", template.eddsa(typ="JWT"), "wrong_token_type"),
        ("opaque refresh token as bearer", refresh_token, "malformed"),
        ("garbage", "not.a.jwt", "malformed"),
    ]
    result = [Case(name, _bearer(token), invalid, cause) for name, token, cause in cases]
    result += [
        Case("'Bearer ' with an empty token", "Bearer ", "UNAUTHENTICATED"),
        Case("Basic scheme", "Basic xyz", "UNAUTHENTICATED"),
        Case("token without a scheme", template.token, "UNAUTHENTICATED"),
    ]
    return result


async def _template(grpc_server: Any, actor: Actor) -> Template:
    header = jwt.get_unverified_header(actor.access_token)
    claims = jwt.decode(actor.access_token, options={"verify_signature": False})
    keyring = grpc_server.security.keyring
    # The claims shape the server issues (server/auth/tokens.py).
    assert header == {"alg": "EdDSA", "typ": "at+jwt", "kid": keyring.signing_kid}
    assert set(claims) == {
        "iss",
        "aud",
        "sub",
        "iat",
        "nbf",
        "exp",
        "jti",
        "ptype",
        "role",
        "sid",
        "typ",
    }
    assert claims["typ"] == "access" and claims["sub"].startswith("user:")
    return Template(actor.access_token, header, claims, keyring.sign_key, keyring.signing_kid)


async def _call(
    channel: grpc.aio.Channel, path: str, authorization: str | None
) -> grpc.aio.AioRpcError | None:
    call = channel.unary_unary(
        path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=None
    )
    metadata = (("authorization", authorization),) if authorization is not None else None
    try:
        await call(RPCS[path], metadata=metadata, timeout=HANG_SECONDS)  # bounds a hang only
    except grpc.aio.AioRpcError as error:
        return error
    return None


def _secrets_in(authorization: str) -> list[str]:
    """Pieces of the credential that must never come back in an error."""
    _, _, token = authorization.partition(" ")
    token = token or authorization
    pieces = [token, *token.split(".")]
    return [piece for piece in pieces if len(piece) >= 8]


def _leaks(error: grpc.aio.AioRpcError, details: ErrorDetails, authorization: str) -> list[str]:
    texts = [error.details() or "", details.message, *details.metadata.values()]
    for _, value in error.trailing_metadata() or ():
        texts.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
    for _, value in error.initial_metadata() or ():
        texts.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
    return [piece for piece in _secrets_in(authorization) if any(piece in t for t in texts)]


def _check_refused(case: Case, path: str, error: grpc.aio.AioRpcError | None) -> str | None:
    where = f"{case.name} on {path.rsplit('/', 1)[1]}"
    if error is None:
        return f"{where}: accepted"
    details = details_of(error)
    if details.code != grpc.StatusCode.UNAUTHENTICATED or details.reason != case.reason:
        return f"{where}: {details.code.name}/{details.reason}: {details.message}"
    if case.cause is not None and details.metadata.get("cause") != case.cause:
        return f"{where}: cause {details.metadata.get('cause')!r}, expected {case.cause!r}"
    leaked = _leaks(error, details, case.authorization)
    if leaked:
        return f"{where}: the error echoes token material {leaked}"
    return None


async def _refusals(channel: grpc.aio.Channel, cases: list[Case], paths: list[str]) -> list[str]:
    jobs = [(case, path) for case in cases for path in paths]
    errors = await asyncio.gather(*(_call(channel, p, c.authorization) for c, p in jobs))
    return [
        line
        for (case, path), error in zip(jobs, errors, strict=True)
        if (line := _check_refused(case, path, error)) is not None
    ]


# -------------------------------------------------------------------------- tests


async def test_real_token_is_accepted(channel: grpc.aio.Channel, grpc_server: Any) -> None:
    user = await register_user(channel)
    await _template(grpc_server, user)  # the shape the forgeries copy
    for path in RPCS:
        assert await _call(channel, path, _bearer(user.access_token)) is None, path
    me = await auth_stub(channel).GetMe(auth_service_pb2.GetMeRequest(), metadata=user.metadata)
    assert me.user.user_id == user.user_id
    # Re-signing the untouched claims with the real key is accepted too: the forgeries
    # below fail because of the one thing each changes, not because of how they are built.
    template = await _template(grpc_server, user)
    assert await _call(channel, GET_ME, _bearer(template.eddsa())) is None


@pytest.mark.parametrize("path", list(RPCS), ids=["GetMe", "ListPlanGroups"])
async def test_forged_and_malformed_tokens_are_unauthenticated(
    path: str, channel: grpc.aio.Channel, grpc_server: Any
) -> None:
    user = await register_user(channel)
    template = await _template(grpc_server, user)
    cases = _forged_cases(template, user.refresh_token)
    problems = await _refusals(channel, cases, [path])
    assert not problems, f"{len(problems)} token(s) not refused as expected:\n" + "\n".join(
        problems
    )
    # The user's real token still works after all that.
    assert await _call(channel, path, _bearer(user.access_token)) is None


async def test_anonymous_public_call_still_works(channel: grpc.aio.Channel) -> None:
    assert await _call(channel, LIST_PLAN_GROUPS, None) is None
    error = await _call(channel, GET_ME, None)
    assert error is not None and details_of(error).reason == "LOGIN_REQUIRED"


async def test_token_of_a_logged_out_session(channel: grpc.aio.Channel) -> None:
    user = await register_user(channel)
    other = await register_user(channel)
    await auth_stub(channel).Logout(auth_service_pb2.LogoutRequest(), metadata=user.metadata)
    case = Case("revoked session (Logout)", _bearer(user.access_token), "SESSION_ENDED")
    # The revoking process forgets the session at once (no cache delay).
    problems = await _refusals(channel, [case], list(RPCS))
    assert not problems, "\n".join(problems)
    # Another user's session is untouched.
    assert await _call(channel, GET_ME, _bearer(other.access_token)) is None


async def test_token_of_a_blocked_user(
    channel: grpc.aio.Channel, resources: Any, server_clock: FakeClock
) -> None:
    """Refused within ``auth_cache_seconds`` + 1 s of the block, on the server's clock."""
    limit = resources.settings.auth_cache_seconds + 1.0
    user = await register_user(channel)
    bystander = await register_user(channel)
    for path in RPCS:  # cached as active first, so the test also covers the cache expiry
        assert await _call(channel, path, _bearer(user.access_token)) is None
    async with resources.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET status = 'blocked' WHERE user_id = :id"), {"id": user.user_id}
        )
    # Still the cached state until it ages out: the clock decides, not the machine's speed.
    assert await _call(channel, GET_ME, _bearer(user.access_token)) is None
    server_clock.advance(limit)
    case = Case("user blocked in the database", _bearer(user.access_token), "SESSION_ENDED")
    problems = await _refusals(channel, [case], list(RPCS))
    assert not problems, "\n".join(problems)
    assert await _call(channel, GET_ME, _bearer(bystander.access_token)) is None


async def test_token_of_a_disabled_service_account(
    channel: grpc.aio.Channel, resources: Any, server_clock: FakeClock
) -> None:
    """Refused within ``auth_cache_seconds`` + 1 s of the change, on the server's clock."""
    limit = resources.settings.auth_cache_seconds + 1.0
    service = await create_service(channel, resources)
    claims = jwt.decode(service.access_token, options={"verify_signature": False})
    assert claims["ptype"] == "service" and "sid" not in claims
    for path in RPCS:
        assert await _call(channel, path, _bearer(service.access_token)) is None
    async with resources.engine.begin() as conn:
        await conn.execute(
            text("UPDATE service_accounts SET status = 'disabled' WHERE client_id = :id"),
            {"id": service.email},
        )
    assert await _call(channel, GET_ME, _bearer(service.access_token)) is None  # still cached
    server_clock.advance(limit)
    case = Case("disabled service account", _bearer(service.access_token), "SESSION_ENDED")
    problems = await _refusals(channel, [case], list(RPCS))
    assert not problems, "\n".join(problems)


async def test_forged_service_token_for_unknown_account(
    channel: grpc.aio.Channel, grpc_server: Any
) -> None:
    """Even signed with the real key, a service subject nobody issued is refused."""
    user = await register_user(channel)
    template = await _template(grpc_server, user)
    claims = template.claims_with(sub="service:no-such-client", ptype="service", role="Service")
    del claims["sid"]
    case = Case("unknown service account", _bearer(template.eddsa(claims)), "SESSION_ENDED")
    problems = await _refusals(channel, [case], list(RPCS))
    assert not problems, "\n".join(problems)
