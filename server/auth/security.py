"""The identity-and-access machinery one server process shares."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from server.auth.access import Authenticator, PermissionMatrix
from server.auth.keys import KeyRing, load_keyring
from server.auth.throttle import Throttle
from server.auth.tokens import TokenService, otp_pepper
from server.core.crypto import SecretBox, load_secret_box
from server.core.messaging import MessageSender, create_sender
from server.core.resources import Resources


@dataclass(frozen=True)
class Security:
    keyring: KeyRing
    tokens: TokenService
    secret_box: SecretBox
    otp_pepper: bytes
    sender: MessageSender
    throttle: Throttle
    authenticator: Authenticator
    matrix: PermissionMatrix


def build_security(
    resources: Resources, *, clock: Callable[[], float] = time.monotonic
) -> Security:
    """``clock`` (monotonic seconds) ages the session, service-account and permission
    caches (tests pass a fake one to step past ``auth_cache_seconds``)."""
    settings = resources.settings
    keyring = load_keyring(settings)
    tokens = TokenService(
        keyring,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
    )
    box = load_secret_box(settings)
    return Security(
        keyring=keyring,
        tokens=tokens,
        secret_box=box,
        otp_pepper=otp_pepper(box),
        sender=create_sender(settings, resources.mongo_db),
        throttle=Throttle(resources.db),
        authenticator=Authenticator(resources.db, tokens, settings.auth_cache_seconds, clock=clock),
        matrix=PermissionMatrix(resources.db, settings.auth_cache_seconds, clock=clock),
    )
