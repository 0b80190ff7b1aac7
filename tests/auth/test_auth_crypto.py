"""Unit tests of the cryptographic building blocks: key ring, access tokens, opaque
tokens and OTP hashes, TOTP, SecretBox, password policy. Pure functions, no servers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from server.auth import password_policy, totp
from server.auth.keys import (
    DEV_KEY_FILE,
    KeyRing,
    VerificationKey,
    generate_private_key_pem,
    jwk_thumbprint,
    load_keyring,
    public_key_pem,
)
from server.auth.tokens import (
    AccessClaims,
    TokenError,
    TokenService,
    hashes_equal,
    new_opaque_token,
    new_otp_code,
    otp_hash,
    otp_pepper,
    token_hash,
)
from server.core.config import Environment, Settings
from server.core.crypto import (
    DATA_KEY_FILE,
    SecretBox,
    b64url_decode,
    b64url_encode,
    load_secret_box,
)
from tests.helpers.clock import FakeUtcClock

T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
ISSUER = "gencharge"
AUDIENCE = "gencharge-api"
TTL = 600


def _settings(tmp: Path | None = None, **values: Any) -> Settings:
    """Settings that ignore any GENCHARGE_* key variables in the environment."""
    base: dict[str, Any] = {
        "environment": Environment.DEVELOPMENT,
        "data_dir": tmp if tmp is not None else Path("/nonexistent"),
        "jwt_private_key": "",
        "jwt_previous_public_keys": "",
        "jwt_previous_keys_valid_until": "",
        "data_encryption_key": "",
    }
    base.update(values)
    return Settings(**base)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def ring(key: Ed25519PrivateKey) -> KeyRing:
    return KeyRing(key)


@pytest.fixture
def clock() -> FakeUtcClock:
    return FakeUtcClock(T0)


@pytest.fixture
def service(ring: KeyRing, clock: FakeUtcClock) -> TokenService:
    return TokenService(ring, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=TTL, clock=clock)


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(T0.timestamp())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user:42",
        "iat": now,
        "nbf": now,
        "exp": now + TTL,
        "jti": "0" * 32,
        "ptype": "user",
        "role": "customer",
        "sid": "7",
        "typ": "access",
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _sign(key: Any, kid: str | None, claims: dict[str, Any], alg: str = "EdDSA", **hdr: Any) -> str:
    headers: dict[str, Any] = {"typ": "at+jwt", **hdr}
    if kid is not None:
        headers["kid"] = kid
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def _segment(value: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(value).encode())


def _reason(service: TokenService, token: str) -> str:
    with pytest.raises(TokenError) as caught:
        service.verify(token)
    return caught.value.reason


# --- access tokens -------------------------------------------------------------------


def test_round_trip_user_token(service: TokenService, ring: KeyRing) -> None:
    token, expires = service.issue(
        principal_type="user", principal_id="42", role="customer", session_id="s-9"
    )
    assert expires == T0 + timedelta(seconds=TTL)
    claims = service.verify(token)
    assert isinstance(claims, AccessClaims)
    assert claims.principal_type == "user"
    assert claims.principal_id == "42"
    assert claims.subject == "user:42"
    assert claims.role == "customer"
    assert claims.session_id == "s-9"
    assert re.fullmatch(r"[0-9a-f]{32}", claims.token_id)
    assert claims.issued_at == T0
    assert claims.expires_at == expires

    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "typ": "at+jwt", "kid": ring.signing_kid}
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["typ"] == "access"
    assert payload["iss"] == ISSUER and payload["aud"] == AUDIENCE
    assert payload["nbf"] == payload["iat"] and payload["exp"] - payload["iat"] == TTL


def test_service_token_has_no_session(service: TokenService) -> None:
    token, _ = service.issue(
        principal_type="service", principal_id="billing", role="service", session_id=None
    )
    assert "sid" not in jwt.decode(token, options={"verify_signature": False})
    claims = service.verify(token)
    assert claims.session_id is None
    assert claims.subject == "service:billing"


def test_service_token_carries_its_scopes(service: TokenService) -> None:
    token, _ = service.issue(
        principal_type="service",
        principal_id="billing",
        role="service",
        session_id=None,
        scopes=["recharges.write", "payments.confirm", "recharges.write"],
    )
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["scope"] == "payments.confirm recharges.write"  # RFC 8693: one string
    assert service.verify(token).scopes == {"payments.confirm", "recharges.write"}
    bare, _ = service.issue(
        principal_type="service", principal_id="billing", role="service", session_id=None
    )
    assert "scope" not in jwt.decode(bare, options={"verify_signature": False})
    assert service.verify(bare).scopes == frozenset()


def test_only_service_tokens_carry_scopes(
    service: TokenService, ring: KeyRing, key: Ed25519PrivateKey
) -> None:
    with pytest.raises(ValueError, match="only service tokens"):
        service.issue(
            principal_type="user",
            principal_id="42",
            role="customer",
            session_id="s",
            scopes=["payments.confirm"],
        )
    # Even signed with our key, a user token claiming a scope is refused outright.
    forged = _sign(key, ring.signing_kid, _claims(scope="payments.confirm"))
    assert _reason(service, forged) == "malformed"
    service_claims = {"sub": "service:billing", "ptype": "service", "sid": None}
    listed = _claims(**service_claims, scope=["payments.confirm"])
    assert _reason(service, _sign(key, ring.signing_kid, listed)) == "malformed"
    ok = _claims(**service_claims, scope="recharges.read")
    assert service.verify(_sign(key, ring.signing_kid, ok)).scopes == {"recharges.read"}


def test_principal_id_may_contain_colons(service: TokenService) -> None:
    token, _ = service.issue(
        principal_type="admin", principal_id="a:b", role="admin", session_id="1"
    )
    assert service.verify(token).principal_id == "a:b"


def test_issue_rejects_unknown_principal_type(service: TokenService) -> None:
    with pytest.raises(ValueError):
        service.issue(principal_type="robot", principal_id="1", role="x", session_id=None)


def test_token_ids_are_unique(service: TokenService) -> None:
    ids = {
        service.verify(
            service.issue(principal_type="user", principal_id="1", role="r", session_id="s")[0]
        ).token_id
        for _ in range(50)
    }
    assert len(ids) == 50


def test_alg_none_rejected(service: TokenService, ring: KeyRing) -> None:
    header = {"alg": "none", "typ": "at+jwt", "kid": ring.signing_kid}
    token = f"{_segment(header)}.{_segment(_claims())}."
    assert _reason(service, token) == "algorithm_not_allowed"
    # Case variants too.
    header["alg"] = "None"
    assert _reason(service, f"{_segment(header)}.{_segment(_claims())}.") == (
        "algorithm_not_allowed"
    )


def test_hs256_keyed_with_public_key_rejected(
    service: TokenService, ring: KeyRing, key: Ed25519PrivateKey
) -> None:
    """The classic key-confusion attack: HMAC with the (public) verification key."""
    public = key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = public_key_pem(public).encode()
    for secret in (raw, pem):
        header = {"alg": "HS256", "typ": "at+jwt", "kid": ring.signing_kid}
        signing_input = f"{_segment(header)}.{_segment(_claims())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert _reason(service, f"{signing_input}.{b64url_encode(mac)}") == (
            "algorithm_not_allowed"
        )


def test_es256_and_rs256_rejected(service: TokenService, ring: KeyRing) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    assert _reason(service, _sign(ec_key, ring.signing_kid, _claims(), "ES256")) == (
        "algorithm_not_allowed"
    )
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert _reason(service, _sign(rsa_key, ring.signing_kid, _claims(), "RS256")) == (
        "algorithm_not_allowed"
    )


def test_wrong_key_with_our_kid_rejected(service: TokenService, ring: KeyRing) -> None:
    other = Ed25519PrivateKey.generate()
    assert _reason(service, _sign(other, ring.signing_kid, _claims())) == "bad_signature"


def test_tampered_payload_rejected(service: TokenService, key: Ed25519PrivateKey) -> None:
    token, _ = service.issue(principal_type="user", principal_id="1", role="r", session_id="s")
    head, _, sig = token.split(".")
    forged = _segment(_claims(sub="user:2", role="admin"))
    assert _reason(service, f"{head}.{forged}.{sig}") == "bad_signature"


def test_unknown_or_missing_kid_rejected(service: TokenService, key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    other_kid = jwk_thumbprint(other.public_key())
    assert _reason(service, _sign(other, other_kid, _claims())) == "unknown_kid"
    assert _reason(service, _sign(key, None, _claims())) == "unknown_kid"
    assert _reason(service, _sign(key, "", _claims())) == "unknown_kid"


def test_wrong_audience_and_issuer_rejected(
    service: TokenService, ring: KeyRing, key: Ed25519PrivateKey, clock: FakeUtcClock
) -> None:
    other_aud = TokenService(
        ring, issuer=ISSUER, audience="other-api", ttl_seconds=TTL, clock=clock
    )
    token, _ = other_aud.issue(principal_type="user", principal_id="1", role="r", session_id="s")
    assert _reason(service, token) == "wrong_audience"
    other_iss = TokenService(ring, issuer="evil", audience=AUDIENCE, ttl_seconds=TTL, clock=clock)
    token, _ = other_iss.issue(principal_type="user", principal_id="1", role="r", session_id="s")
    assert _reason(service, token) == "wrong_issuer"
    # Lists and look-alike prefixes are not our audience/issuer.
    kid = ring.signing_kid
    assert _reason(service, _sign(key, kid, _claims(aud=[AUDIENCE, "x"]))) == "wrong_audience"
    assert _reason(service, _sign(key, kid, _claims(iss=ISSUER[:-1]))) == "wrong_issuer"


def test_expiry_with_small_leeway(service: TokenService, clock: FakeUtcClock) -> None:
    token, expires = service.issue(
        principal_type="user", principal_id="1", role="r", session_id="s"
    )
    clock.now = expires + timedelta(seconds=4)
    service.verify(token)  # within the 5 s leeway
    clock.now = expires + timedelta(seconds=5)
    assert _reason(service, token) == "expired"
    clock.now = expires + timedelta(days=1)
    assert _reason(service, token) == "expired"


def test_not_yet_valid(service: TokenService, ring: KeyRing, key: Ed25519PrivateKey) -> None:
    later = int(T0.timestamp()) + 60
    token = _sign(key, ring.signing_kid, _claims(nbf=later, iat=later, exp=later + TTL))
    assert _reason(service, token) == "not_yet_valid"
    token = _sign(key, ring.signing_kid, _claims(nbf=int(T0.timestamp()) + 4))
    service.verify(token)  # within leeway


def test_refresh_or_untyped_token_rejected(
    service: TokenService, ring: KeyRing, key: Ed25519PrivateKey
) -> None:
    kid = ring.signing_kid
    assert _reason(service, _sign(key, kid, _claims(typ="refresh"))) == "wrong_token_type"
    assert _reason(service, _sign(key, kid, _claims(typ=None))) == "wrong_token_type"
    assert _reason(service, _sign(key, kid, _claims(), typ="JWT")) == "wrong_token_type"


@pytest.mark.parametrize("claim", ["sub", "exp", "iat", "nbf", "jti", "iss", "aud"])
def test_missing_required_claim_rejected(
    service: TokenService, ring: KeyRing, key: Ed25519PrivateKey, claim: str
) -> None:
    assert _reason(service, _sign(key, ring.signing_kid, _claims(**{claim: None}))) == ("malformed")


@pytest.mark.parametrize(
    "overrides",
    [
        {"ptype": None},
        {"ptype": "robot", "sub": "robot:1"},
        {"sub": "admin:42"},  # subject type differs from ptype
        {"sub": "user:"},
        {"role": None},
        {"role": 5},
        {"sid": 7},
        {"exp": "soon"},
        {"iat": True},
    ],
)
def test_ill_typed_claims_rejected(
    service: TokenService, ring: KeyRing, key: Ed25519PrivateKey, overrides: dict[str, Any]
) -> None:
    assert _reason(service, _sign(key, ring.signing_kid, _claims(**overrides))) == "malformed"


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b.c", "...", "eyJhbGciOiJFZERTQSJ9", "x" * 10_000, "ü.ü.ü"],
)
def test_garbage_rejected(service: TokenService, token: str) -> None:
    assert _reason(service, token) in {"malformed", "algorithm_not_allowed"}


def test_garbage_with_valid_header_is_malformed(service: TokenService, ring: KeyRing) -> None:
    header = _segment({"alg": "EdDSA", "typ": "at+jwt", "kid": ring.signing_kid})
    assert _reason(service, f"{header}.!!!.???") == "malformed"
    assert _reason(service, "garbage") == "malformed"


def test_crit_header_rejected(service: TokenService, ring: KeyRing, key: Ed25519PrivateKey) -> None:
    token = _sign(key, ring.signing_kid, _claims(), crit=["exp"])
    assert _reason(service, token) == "malformed"


# --- key ring, rotation and JWKS -----------------------------------------------------


def test_rfc8037_thumbprint_vector() -> None:
    """RFC 8037 appendix A.3: the thumbprint of the appendix A.2 public key."""
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    public = Ed25519PublicKey.from_public_bytes(b64url_decode(x))
    assert jwk_thumbprint(public) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_previous_key_verifies_until_not_after(clock: FakeUtcClock) -> None:
    old = Ed25519PrivateKey.generate()
    new = Ed25519PrivateKey.generate()
    old_service = TokenService(
        KeyRing(old), issuer=ISSUER, audience=AUDIENCE, ttl_seconds=900, clock=clock
    )
    token, _ = old_service.issue(principal_type="user", principal_id="1", role="r", session_id="s")

    not_after = T0 + timedelta(minutes=10)
    old_kid = jwk_thumbprint(old.public_key())
    ring = KeyRing(new, [VerificationKey(old_kid, old.public_key(), not_after)])
    service = TokenService(ring, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=900, clock=clock)
    assert service.verify(token).principal_id == "1"
    clock.now = not_after
    service.verify(token)
    clock.now = not_after + timedelta(seconds=1)
    assert ring.verification_key(old_kid, clock.now) is None
    assert _reason(service, token) == "unknown_kid"
    # New tokens are signed with the new key.
    fresh, _ = service.issue(principal_type="user", principal_id="2", role="r", session_id="s")
    assert jwt.get_unverified_header(fresh)["kid"] == jwk_thumbprint(new.public_key())


def test_jwks_public_only_and_kid_is_thumbprint() -> None:
    old = Ed25519PrivateKey.generate()
    new = Ed25519PrivateKey.generate()
    not_after = T0 + timedelta(minutes=15)
    old_kid = jwk_thumbprint(old.public_key())
    ring = KeyRing(new, [VerificationKey(old_kid, old.public_key(), not_after)])

    keys = ring.jwks(T0)
    assert [k["kid"] for k in keys] == [ring.signing_kid, old_kid]
    private_raw = new.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    for jwk_dict in keys:
        assert set(jwk_dict) == {"kty", "crv", "x", "kid", "alg", "use"}
        assert jwk_dict["kty"] == "OKP" and jwk_dict["crv"] == "Ed25519"
        assert jwk_dict["alg"] == "EdDSA" and jwk_dict["use"] == "sig"
        assert "d" not in jwk_dict
        assert b64url_encode(private_raw) not in json.dumps(jwk_dict)
        # kid is the RFC 7638 thumbprint, recomputed independently here.
        canonical = json.dumps(
            {"crv": "Ed25519", "kty": "OKP", "x": jwk_dict["x"]},
            separators=(",", ":"),
            sort_keys=True,
        )
        expected = b64url_encode(hashlib.sha256(canonical.encode()).digest())
        assert jwk_dict["kid"] == expected
    assert [k["kid"] for k in ring.jwks(not_after + timedelta(seconds=1))] == [ring.signing_kid]


def test_jwks_usable_by_a_standard_client(service: TokenService, ring: KeyRing) -> None:
    token, _ = service.issue(principal_type="user", principal_id="1", role="r", session_id="s")
    jwks = jwt.PyJWKSet.from_dict({"keys": ring.jwks(T0)})
    signing = jwks[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(
        token,
        signing,
        algorithms=["EdDSA"],
        audience=AUDIENCE,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert claims["sub"] == "user:1"


def test_load_keyring_from_settings_with_previous_keys(tmp_path: Path) -> None:
    current_pem = generate_private_key_pem()
    old1, old2 = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    bundle = public_key_pem(old1) + "\n" + public_key_pem(old2.public_key())
    settings = _settings(
        tmp_path,
        jwt_private_key=current_pem,
        jwt_previous_public_keys=bundle,
        jwt_previous_keys_valid_until="2026-11-20T12:15:00Z",
    )
    ring = load_keyring(settings)
    current = serialization.load_pem_private_key(current_pem.encode(), password=None)
    assert isinstance(current, Ed25519PrivateKey)
    assert ring.signing_kid == jwk_thumbprint(current.public_key())
    for old in (old1, old2):
        kid = jwk_thumbprint(old.public_key())
        found = ring.verification_key(kid, T0)
        assert found is not None
        assert found.not_after == datetime(2026, 11, 20, 12, 15, tzinfo=UTC)
        assert ring.verification_key(kid, T0 + timedelta(minutes=16)) is None
    assert not (tmp_path / DEV_KEY_FILE).exists()  # configured key: nothing written


def test_load_keyring_accepts_escaped_newlines() -> None:
    pem = generate_private_key_pem()
    ring = load_keyring(_settings(jwt_private_key=pem.strip().replace("\n", "\\n")))
    assert ring.signing_kid


@pytest.mark.parametrize("valid_until", ["", "next tuesday"])
def test_previous_keys_need_a_valid_deadline(valid_until: str) -> None:
    settings = _settings(
        jwt_private_key=generate_private_key_pem(),
        jwt_previous_public_keys=public_key_pem(Ed25519PrivateKey.generate()),
        jwt_previous_keys_valid_until=valid_until,
    )
    with pytest.raises(ValueError, match="GENCHARGE_JWT_PREVIOUS_KEYS_VALID_UNTIL"):
        load_keyring(settings)


def test_bad_key_configuration_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="GENCHARGE_JWT_PRIVATE_KEY"):
        load_keyring(_settings(jwt_private_key="not a key"))
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ValueError, match="Ed25519"):
        load_keyring(_settings(jwt_private_key=ec_pem))
    with pytest.raises(ValueError, match="GENCHARGE_JWT_PREVIOUS_PUBLIC_KEYS"):
        load_keyring(
            _settings(
                jwt_private_key=generate_private_key_pem(),
                jwt_previous_public_keys="garbage",
                jwt_previous_keys_valid_until="2026-11-20T12:15:00Z",
            )
        )


def test_production_requires_keys(tmp_path: Path) -> None:
    settings = _settings(tmp_path, environment=Environment.PRODUCTION)
    with pytest.raises(ValueError, match="GENCHARGE_JWT_PRIVATE_KEY is required in production"):
        load_keyring(settings)
    with pytest.raises(ValueError, match="GENCHARGE_DATA_ENCRYPTION_KEY is required in production"):
        load_secret_box(settings)
    assert not (tmp_path / "keys").exists()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_dev_signing_key_persisted_and_reloaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with caplog.at_level(logging.DEBUG):
        first = load_keyring(_settings(data_dir))
    second = load_keyring(_settings(data_dir))
    assert first.signing_kid == second.signing_kid
    path = data_dir / DEV_KEY_FILE
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left
    assert "PRIVATE KEY" not in caplog.text
    # Tokens issued before a "restart" still verify after it.
    token, _ = TokenService(first, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=TTL).issue(
        principal_type="user", principal_id="1", role="r", session_id="s"
    )
    TokenService(second, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=TTL).verify(token)


def test_dev_key_ephemeral_when_data_dir_unusable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        first = load_keyring(_settings(blocker / "data"))
        second = load_keyring(_settings(blocker / "data"))
        box = load_secret_box(_settings(blocker / "data"))
    assert first.signing_kid != second.signing_kid
    assert box.open(box.seal("x")) == "x"
    assert "ephemeral" in caplog.text
    assert "PRIVATE KEY" not in caplog.text


def test_dev_keys_ephemeral_when_absolute_data_dir_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "missing" / "data"
    with caplog.at_level(logging.WARNING):
        load_keyring(_settings(missing))
        load_secret_box(_settings(missing))
    assert not (tmp_path / "missing").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("JWT signing key" in m and "ephemeral" in m for m in warnings)
    assert any("data-encryption key" in m and "ephemeral" in m for m in warnings)


def test_relative_data_dir_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ring = load_keyring(_settings(Path(".data")))
    assert (tmp_path / ".data" / DEV_KEY_FILE).is_file()
    assert load_keyring(_settings(Path(".data"))).signing_kid == ring.signing_kid


def test_dev_data_key_persisted(tmp_path: Path) -> None:
    first = load_secret_box(_settings(tmp_path))
    sealed = first.seal("JBSWY3DPEHPK3PXP")
    second = load_secret_box(_settings(tmp_path))
    assert second.open(sealed) == "JBSWY3DPEHPK3PXP"
    assert _mode(tmp_path / DATA_KEY_FILE) == 0o600
    assert len(base64.b64decode((tmp_path / DATA_KEY_FILE).read_text())) == 32


# --- SecretBox -------------------------------------------------------------------------


def test_secret_box_round_trip_and_format() -> None:
    box = SecretBox(bytes(range(32)))
    sealed = box.seal("totp-secret ✓")
    assert sealed.startswith("v1.")
    assert "totp" not in sealed
    assert box.open(sealed) == "totp-secret ✓"
    assert box.seal("same") != box.seal("same")  # fresh nonce each time
    assert box.open(box.seal("")) == ""
    assert repr(box) == "SecretBox(<redacted>)"


def test_secret_box_detects_tampering_and_wrong_key() -> None:
    box = SecretBox(b"k" * 32)
    sealed = box.seal("secret")
    blob = bytearray(b64url_decode(sealed[3:]))
    for index in (0, 12, len(blob) - 1):  # nonce, ciphertext, tag
        altered = bytearray(blob)
        altered[index] ^= 1
        with pytest.raises(ValueError):
            box.open("v1." + b64url_encode(bytes(altered)))
    with pytest.raises(ValueError):
        SecretBox(b"j" * 32).open(sealed)
    for bad in (
        "",
        "v1.",
        "v2." + sealed[3:],
        "v1.%%%",
        "v1." + b64url_encode(b"short"),
        sealed[3:],
    ):
        with pytest.raises(ValueError):
            box.open(bad)


def test_secret_box_binds_associated_data() -> None:
    box = SecretBox(b"k" * 32)
    sealed = box.seal("secret", associated_data=b"admin:1")
    assert box.open(sealed, associated_data=b"admin:1") == "secret"
    with pytest.raises(ValueError):
        box.open(sealed, associated_data=b"admin:2")
    with pytest.raises(ValueError):
        box.open(sealed)


def test_secret_box_previous_keys_open_old_values() -> None:
    old = SecretBox(b"o" * 32)
    sealed = old.seal("secret")
    rotated = SecretBox(b"n" * 32, previous_keys=[b"o" * 32])
    assert rotated.open(sealed) == "secret"
    with pytest.raises(ValueError):
        SecretBox(b"o" * 32).open(rotated.seal("x"))


def test_secret_box_knows_what_needs_resealing() -> None:
    sealed_old = SecretBox(b"o" * 32).seal("secret", associated_data=b"a")
    rotated = SecretBox(b"n" * 32, previous_keys=[b"o" * 32])
    assert not rotated.sealed_with_current_key(sealed_old, associated_data=b"a")
    assert rotated.sealed_with_current_key(
        rotated.seal("s", associated_data=b"a"), associated_data=b"a"
    )
    assert not rotated.sealed_with_current_key(rotated.seal("s"), associated_data=b"a")
    assert not rotated.sealed_with_current_key("v1.garbage!")
    assert not rotated.sealed_with_current_key("not sealed")


def test_previous_data_keys_from_settings(tmp_path: Path) -> None:
    from server.core.crypto import generate_data_key, load_secret_box

    old, new = generate_data_key(), generate_data_key()
    sealed = load_secret_box(Settings(data_encryption_key=old, data_dir=tmp_path)).seal("x")
    rotated = Settings(
        data_encryption_key=new, data_encryption_previous_keys=f" {old},\n", data_dir=tmp_path
    )
    assert load_secret_box(rotated).open(sealed) == "x"
    bad = Settings(
        data_encryption_key=new,
        data_encryption_previous_keys=f"{old} not-a-key-at-all",
        data_dir=tmp_path,
    )
    with pytest.raises(ValueError, match="PREVIOUS_KEYS: key 2 is not base64") as info:
        load_secret_box(bad)
    assert "not-a-key-at-all" not in str(info.value)


def test_secret_box_key_length_and_derive_key() -> None:
    with pytest.raises(ValueError):
        SecretBox(b"short")
    box = SecretBox(b"k" * 32)
    a = box.derive_key(b"gencharge/a")
    assert len(a) == 32
    assert a == SecretBox(b"k" * 32).derive_key(b"gencharge/a")
    assert a != box.derive_key(b"gencharge/b")
    assert a != SecretBox(b"j" * 32).derive_key(b"gencharge/a")
    assert a != b"k" * 32
    with pytest.raises(ValueError):
        box.derive_key(b"")


def test_data_key_setting(tmp_path: Path) -> None:
    raw = bytes(range(32))
    for text in (
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ):
        box = load_secret_box(_settings(tmp_path, data_encryption_key=text))
        assert box.open(SecretBox(raw).seal("x")) == "x"
    for bad in ("not base64!", base64.b64encode(b"x" * 16).decode()):
        with pytest.raises(ValueError, match="GENCHARGE_DATA_ENCRYPTION_KEY") as caught:
            load_secret_box(_settings(tmp_path, data_encryption_key=bad))
        assert bad not in str(caught.value)
    assert not (tmp_path / "keys").exists()


# --- opaque tokens and OTP codes -------------------------------------------------------


def test_opaque_tokens() -> None:
    token = new_opaque_token("rt")
    assert re.fullmatch(r"rt_[A-Za-z0-9_-]{43}", token)
    assert len(b64url_decode(token[3:])) == 32
    assert new_opaque_token("rt") != token
    assert token_hash(token) == hashlib.sha256(token.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", token_hash(token))
    for bad in ("", "a_b", "x" * 33, "ü"):
        with pytest.raises(ValueError):
            new_opaque_token(bad)


def test_hashes_equal() -> None:
    assert hashes_equal("abc", "abc")
    assert not hashes_equal("abc", "abd")
    assert not hashes_equal("abc", "abcd")
    assert hashes_equal(b"\x00\x01", b"\x00\x01")
    assert hashes_equal("ü", "ü")


def test_otp_code_format_and_distribution() -> None:
    codes = [new_otp_code() for _ in range(20_000)]
    assert all(re.fullmatch(r"[0-9]{6}", code) for code in codes)
    # Every digit appears in every position; leading zeros are kept.
    for position in range(6):
        seen = {code[position] for code in codes}
        assert seen == set("0123456789")
    leading_zero = sum(code.startswith("0") for code in codes)
    assert 1_500 < leading_zero < 2_500  # about 10%
    assert len(set(codes)) > 19_000  # ~200 collisions expected among 10^6 values


def test_otp_hash_is_keyed_and_bound() -> None:
    pepper = otp_pepper(SecretBox(b"k" * 32))

    def digest(
        code: str = "012345",
        *,
        phone: str = "+919876543210",
        purpose: str = "login",
        otp_id: int | str = 17,
        key: bytes = pepper,
    ) -> str:
        return otp_hash(code, phone_number=phone, purpose=purpose, otp_id=otp_id, pepper=key)

    reference = digest()
    assert re.fullmatch(r"[0-9a-f]{64}", reference)
    assert reference == digest()
    assert reference == digest(otp_id="17")
    variants = [
        digest("012346"),
        digest(otp_id=18),
        digest(purpose="reset"),
        digest(phone="+919876543211"),
        digest(key=otp_pepper(SecretBox(b"j" * 32))),
    ]
    assert reference not in variants
    # Not a plain (unkeyed) hash an attacker could brute-force from a dump.
    for message in ("login|+919876543210|17|012345", "012345"):
        assert reference != hashlib.sha256(message.encode()).hexdigest()
    with pytest.raises(ValueError):
        digest(key=b"short")


# --- TOTP ------------------------------------------------------------------------------

RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()


@pytest.mark.parametrize(
    ("unix", "code"),
    [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")],
)
def test_totp_rfc6238_vectors(unix: int, code: str) -> None:
    """RFC 6238 appendix B (SHA-1), last six digits."""
    assert totp.current_code(RFC_SECRET, datetime.fromtimestamp(unix, UTC)) == code


def test_totp_secret_and_uri() -> None:
    secret = totp.new_secret()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert len(base64.b32decode(secret)) == 20
    assert totp.new_secret() != secret
    uri = totp.provisioning_uri(secret, "admin@gencharge.local")
    assert uri.startswith("otpauth://totp/GenCharge:admin%40gencharge.local?")
    assert f"secret={secret}" in uri and "issuer=GenCharge" in uri


def test_totp_window() -> None:
    secret = totp.new_secret()
    step = totp.time_step(T0)
    near = {}
    for delta in (-1, 0, 1):
        code = totp.current_code(secret, T0 + timedelta(seconds=30 * delta))
        near[code] = delta
        assert totp.verify(secret, code, now=T0, last_step=None) == step + delta
    for delta in (-3, -2, 2, 3, 10):
        code = totp.current_code(secret, T0 + timedelta(seconds=30 * delta))
        if code not in near:  # skip a one-in-a-million coincidence
            assert totp.verify(secret, code, now=T0, last_step=None) is None


def test_totp_replay_protection() -> None:
    secret = totp.new_secret()
    code = totp.current_code(secret, T0)
    step = totp.verify(secret, code, now=T0, last_step=None)
    assert step is not None
    assert totp.verify(secret, code, now=T0, last_step=step) is None
    assert totp.verify(secret, code, now=T0 + timedelta(seconds=10), last_step=step) is None
    # An older code after a newer one was used is refused too.
    previous = totp.current_code(secret, T0 - timedelta(seconds=30))
    assert totp.verify(secret, previous, now=T0, last_step=step) is None
    following = totp.current_code(secret, T0 + timedelta(seconds=30))
    assert (
        totp.verify(secret, following, now=T0 + timedelta(seconds=30), last_step=step) == step + 1
    )


@pytest.mark.parametrize(
    "code", ["", "12345", "1234567", "abcdef", "12345a", "١٢٣٤٥٦", "12 34 5", "+12345", "-12345"]
)
def test_totp_rejects_malformed_codes(code: str) -> None:
    assert totp.verify(totp.new_secret(), code, now=T0, last_step=None) is None


def test_totp_accepts_spaced_code() -> None:
    secret = totp.new_secret()
    code = totp.current_code(secret, T0)
    assert totp.verify(secret, f" {code[:3]} {code[3:]} ", now=T0, last_step=None) is not None


# --- password policy -------------------------------------------------------------------


def _fullwidth(text: str) -> str:
    """Full-width forms (U+FF01..U+FF5E) of ASCII text; NFKC maps them back."""
    return "".join(chr(ord(ch) + 0xFEE0) for ch in text)


def test_password_length() -> None:
    assert password_policy.password_problem("short1!") == password_policy.TOO_SHORT
    assert password_policy.password_problem("blue-kettle") is None
    passphrase = " ".join(["correct horse battery staple"] * 7)[:200]
    assert len(passphrase) == 200
    assert password_policy.password_problem(passphrase) is None
    assert password_policy.password_problem("x" * 1024 + "y") == password_policy.TOO_LONG
    assert password_policy.password_problem("ab" * 512) is None
    assert password_policy.password_problem(" " * 12) == password_policy.ONLY_SPACES


def test_password_length_counts_code_points() -> None:
    # Seven code points (21 UTF-8 bytes) is too short; eight is enough.
    assert password_policy.password_problem("日本語のパスワ") == password_policy.TOO_SHORT
    assert password_policy.password_problem("日本語のパスワー") is None
    assert password_policy.password_problem("鍵🔑家の鍵🔑家の") is None  # 8 code points, 26 bytes
    assert password_policy.password_problem("🔑" * 7) == password_policy.TOO_SHORT
    # NFKC: a decomposed "é" (e + combining accent) counts as one character.
    assert password_policy.password_problem("cafe\u0301ab1") == password_policy.TOO_SHORT
    assert password_policy.normalize_password("cafe\u0301") == "café"
    assert password_policy.normalize_password(_fullwidth("ABC")) == "ABC"


def test_common_passwords_rejected() -> None:
    assert len(password_policy.common_passwords()) >= 10_000
    for common in (
        "password",
        "PassWord1",
        "12345678",
        "qwerty123",
        "iloveyou",
        _fullwidth("Password"),
    ):
        assert password_policy.password_problem(common) == password_policy.TOO_COMMON


def test_password_equal_to_account_details_rejected() -> None:
    context = ["Priya.Sharma@example.com", "+91 98765 43210", "Priya Sharmaji"]
    problem = password_policy.MATCHES_ACCOUNT
    assert password_policy.password_problem("priya.sharma@EXAMPLE.com", context=context) == problem
    assert password_policy.password_problem("PRIYA SHARMAJI", context=context) == problem
    assert password_policy.password_problem("+91 98765 43210", context=context) == problem
    assert password_policy.password_problem("919876543210", context=context) == problem
    assert password_policy.password_problem("priya.sharma", context=context) == problem
    assert password_policy.password_problem("priya sharma loves tea", context=context) is None
    assert password_policy.password_problem("anything-else", context=["", ""]) is None


def test_password_messages_never_echo_the_password() -> None:
    for password in ("short", "qwerty123", "x" * 5000, "me@example.com"):
        problem = password_policy.password_problem(password, context=["me@example.com"])
        assert problem is not None
        assert password not in problem
