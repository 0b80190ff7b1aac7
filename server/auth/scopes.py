"""Service-account scopes: what an internal caller may do on behalf of customers.

Each RPC a service account may call names its scope in the contract
(``(gencharge.v1.access).service_scope``, read by :mod:`server.auth.access`); the scopes
an account holds are chosen when it is created, stored with it
(``service_accounts.scopes``) and carried in its access tokens as the RFC 8693 ``scope``
claim (space-separated). A call is allowed when the token carries the scope and the
account still holds it (the account's state is cached for ``auth_cache_seconds``, so a
scope taken away stops working within that time; one added needs a new token).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from server.core.errors import InvalidArgument

PAYMENTS_CONFIRM = "payments.confirm"
RECHARGES_WRITE = "recharges.write"
RECHARGES_READ = "recharges.read"

#: Every scope, with what it allows (shown by ``gencharge create-service-account -h``).
SCOPES: Mapping[str, str] = {
    PAYMENTS_CONFIRM: "WalletService.ConfirmPayment: settle a pending payment (gateway callbacks)",
    RECHARGES_WRITE: "RechargeService.QuoteRecharge, Recharge, BatchRecharge and "
    "BatchRechargeChunks on behalf of any customer (debits the customer's wallet)",
    RECHARGES_READ: "RechargeService.GetRecharge: read any customer's recharge by id",
}


def check_scopes(scopes: Iterable[str], *, field: str = "scopes") -> tuple[str, ...]:
    """The known, de-duplicated, sorted scopes; INVALID_ARGUMENT naming unknown ones."""
    wanted = {scope.strip() for scope in scopes}
    unknown = sorted(wanted - SCOPES.keys())
    if unknown:
        raise InvalidArgument.field(
            field,
            f"unknown scope(s) {', '.join(repr(s) for s in unknown)}; "
            f"known: {', '.join(sorted(SCOPES))}",
        )
    return tuple(sorted(wanted))


def scope_claim(scopes: Iterable[str]) -> str:
    """The JWT ``scope`` claim: the scopes, space-separated (RFC 8693 section 4.2)."""
    return " ".join(sorted(set(scopes)))


def scopes_of_claim(claim: str) -> frozenset[str]:
    """The scopes a ``scope`` claim names (unknown names are kept: they match no rule)."""
    return frozenset(claim.split())
