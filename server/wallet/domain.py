"""Wallet rules: balances, top-ups through the payment gateway, the gateway callback,
the ledger and referral rewards (no grpc here).

Money moves only through ledger rows: this module inserts or settles ``transactions``
rows and the database trigger ``update_wallet_balance`` moves ``users.wallet_balance``
(docs/data-model.md, "The wallet trigger"). A wallet-moving row is never inserted with
``ON CONFLICT``: duplicates are kept out by idempotency keys and row locks.

Ownership: a user sees and spends only their own wallet and transactions; another
user's transaction is NOT_FOUND. Admins (and service accounts) whose role grants
``Transactions``/read may read any transaction with GetTransaction; ListTransactions
and ListReferralRewards always list the caller's own rows (the contract has no user
filter; AdminService is the place for listing other users' ledgers), so for admins
and services they are empty. Users are ownership-scoped whatever their role says.
"""

from __future__ import annotations

import asyncio
import importlib
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.audit.scope import audit_change, listed
from server.auth.access import PermissionMatrix
from server.auth.principal import Principal
from server.core import db, idempotency, pagination
from server.core.errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from server.core.money import CURRENCY, from_minor, to_minor
from server.core.schema import SQLSTATE_INSUFFICIENT_BALANCE
from server.payments.gateway import EXTERNAL_METHODS, ChargeResult, PaymentGateway
from server.wallet import queries

Rows = Sequence[Row[Any]]

#: Top-up limits, in paise: Rs 1 to Rs 1,00,000 per top-up.
MIN_TOP_UP_MINOR = 100
MAX_TOP_UP_MINOR = 100_000 * 100
#: How long a pending external payment may stay unpaid (PendingPayment.expires_at);
#: :func:`expire_pending_payments` marks older ones failed.
PENDING_PAYMENT_TTL = timedelta(minutes=30)

TOP_UP_RPC = "WalletService.TopUp"
CONFIRM_RPC = "WalletService.ConfirmPayment"

#: The request field that carries each method's details (PaymentDetails oneof).
DETAILS_FIELD = {"UPI": "upi", "Card": "card", "NetBanking": "net_banking"}
#: The detail key each method needs, and its rule.
DETAILS_KEY = {"UPI": "vpa", "Card": "card_token", "NetBanking": "bank_code"}
_DETAIL_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "UPI": (
        re.compile(r"^[A-Za-z0-9._-]{2,256}@[A-Za-z][A-Za-z0-9.-]{1,64}$"),
        "must be a UPI address such as name@okbank",
    ),
    "Card": (
        re.compile(r"^[A-Za-z0-9_-]{4,128}$"),
        "must be the gateway's card token (4-128 letters, digits, '_' or '-')",
    ),
    "NetBanking": (
        re.compile(r"^[A-Z0-9]{2,20}$"),
        "must be the gateway's bank code (2-20 upper-case letters or digits)",
    ),
}
_PAYMENT_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
MAX_FAILURE_REASON = 500

#: Sources of an externally paid recharge that ConfirmPayment activates.
PAID_RECHARGE_SOURCES = frozenset({"recharge", "autopay"})


# --- wallet ---------------------------------------------------------------------------------


def _wallet_owner(who: Principal) -> int:
    if who.kind != "user":
        raise FailedPrecondition("only customers have a wallet", reason="NO_WALLET")
    return who.numeric_id


async def get_wallet(conn: AsyncConnection, who: Principal) -> Row[Any]:
    row = await queries.get_wallet(conn, _wallet_owner(who))
    if row is None:
        raise FailedPrecondition("this account has no wallet", reason="NO_WALLET")
    return row


# --- top-up -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopUpOrder:
    """A TopUp request, mapped from the proto by the servicer.

    ``method`` is the database method name ("UPI", "Card", "NetBanking"), "Wallet", ""
    (not set) or "?" (an unknown enum value); ``details_field`` names the PaymentDetails
    field that is set ("upi", "card", "net_banking" or "").
    """

    request_id: str
    amount_minor: int | None
    currency: str
    method: str
    details_field: str
    details: Mapping[str, str]
    fingerprint: str


@dataclass(frozen=True)
class TopUpResult:
    transaction: Row[Any]
    #: Set while the payment waits for the user at the gateway.
    redirect_url: str | None = None
    expires_at: datetime | None = None


def _currency_violation(violations: list[FieldViolation], field_name: str, currency: str) -> None:
    if currency not in ("", CURRENCY):
        violations.append(FieldViolation(field_name, f"only {CURRENCY} is supported"))


def validate_top_up(order: TopUpOrder) -> None:
    violations: list[FieldViolation] = []
    try:
        idempotency.validate_request_id(order.request_id)
    except InvalidArgument as exc:
        violations.extend(exc.violations)
    if order.amount_minor is None:
        violations.append(FieldViolation("amount", "is required"))
    else:
        if not MIN_TOP_UP_MINOR <= order.amount_minor <= MAX_TOP_UP_MINOR:
            violations.append(
                FieldViolation(
                    "amount.units_minor",
                    f"must be between {MIN_TOP_UP_MINOR} and {MAX_TOP_UP_MINOR} paise "
                    "(Rs 1 to Rs 1,00,000)",
                )
            )
        _currency_violation(violations, "amount.currency_code", order.currency)
    if order.method == "":
        violations.append(FieldViolation("payment_method", "is required"))
    elif order.method == "Wallet":
        violations.append(
            FieldViolation("payment_method", "a top-up is paid by UPI, card or net banking")
        )
    elif order.method not in EXTERNAL_METHODS:
        violations.append(FieldViolation("payment_method", "is not a known payment method"))
    else:
        expected = DETAILS_FIELD[order.method]
        if order.details_field != expected:
            violations.append(FieldViolation("payment_details", f"must carry {expected} details"))
        else:
            key = DETAILS_KEY[order.method]
            pattern, description = _DETAIL_RULES[order.method]
            if not pattern.match(order.details.get(key, "")):
                violations.append(FieldViolation(f"payment_details.{expected}.{key}", description))
    if violations:
        raise InvalidArgument.of(violations)


def gateway_reference(caller: str, request_id: str) -> str:
    """Our reference for a top-up charge: stable across retries of the same request."""
    return f"topup:{caller}:{request_id}"


async def top_up(
    engine: AsyncEngine, gateway: PaymentGateway, who: Principal, order: TopUpOrder
) -> TopUpResult:
    """Charge through the gateway and record the credit (see docs/payments.md).

    1. claim the idempotency key in its own committed transaction ("in progress");
    2. charge through the gateway, outside any transaction;
    3. authorised: insert the ``success`` credit (the trigger credits the wallet) and
       complete the key, in one transaction; pending: insert a ``pending`` credit with
       the gateway's payment id (nothing moves until ConfirmPayment); declined: release
       the key, write nothing, FAILED_PRECONDITION ``PAYMENT_DECLINED``.
    """
    user_id = _wallet_owner(who)
    validate_top_up(order)
    caller = who.subject
    async with db.side_transaction(engine) as conn:
        owner = await queries.get_wallet(conn, user_id)
        if owner is None:
            raise FailedPrecondition("this account has no wallet", reason="NO_WALLET")
        if owner.status != "active":
            raise PermissionDenied("this account is blocked", reason="ACCOUNT_BLOCKED")
        replay = await idempotency.claim_for_external_call(
            conn,
            caller=caller,
            request_id=order.request_id,
            rpc=TOP_UP_RPC,
            fingerprint=order.fingerprint,
        )
    if replay is not None:
        async with db.read_only(engine) as conn:
            return await _replayed_top_up(conn, user_id, replay.result)
    # From here on the key is "in progress": finish the work even if the caller goes
    # away (a cancelled call would otherwise leave the key stuck until it expires).
    work = asyncio.ensure_future(_charge_and_record(engine, gateway, caller, user_id, order))
    work.add_done_callback(_consume_exception)
    return await asyncio.shield(work)


def _consume_exception(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _charge_and_record(
    engine: AsyncEngine, gateway: PaymentGateway, caller: str, user_id: int, order: TopUpOrder
) -> TopUpResult:
    assert order.amount_minor is not None
    amount = from_minor(order.amount_minor)
    try:
        charge = await gateway.charge(
            amount=amount,
            currency=CURRENCY,
            method=order.method,
            details=dict(order.details),
            reference=gateway_reference(caller, order.request_id),
        )
    except Exception as exc:
        # The gateway is idempotent per reference, so a retry with the same request_id
        # cannot charge twice: forget the key and let the caller retry.
        async with db.side_transaction(engine) as conn:
            await idempotency.release(conn, caller=caller, request_id=order.request_id)
        if isinstance(exc, DomainError):
            raise
        raise Unavailable(
            "the payment gateway did not answer; retry with the same request_id",
            reason="GATEWAY_UNAVAILABLE",
        ) from exc
    if charge.status == "declined":
        async with db.side_transaction(engine) as conn:
            await idempotency.release(conn, caller=caller, request_id=order.request_id)
        raise FailedPrecondition(
            "the payment was declined",
            reason="PAYMENT_DECLINED",
            metadata={"decline_reason": charge.decline_reason or ""},
        )
    async with db.transaction(engine) as conn:
        row = await _record_top_up(conn, user_id, amount, order.method, charge)
        result: dict[str, Any] = {"txn_id": row.txn_id}
        if charge.status == "pending" and charge.redirect_url:
            result["redirect_url"] = charge.redirect_url
        await idempotency.complete(conn, caller=caller, request_id=order.request_id, result=result)
    return _top_up_result(row, result.get("redirect_url"))


async def _record_top_up(
    conn: AsyncConnection, user_id: int, amount: Decimal, method: str, charge: ChargeResult
) -> Row[Any]:
    status = "success" if charge.status == "authorised" else "pending"
    row = await queries.insert_transaction(
        conn,
        {
            "user_id": user_id,
            "category": "wallet",
            "txn_type": "credit",
            "amount": amount,
            "currency": CURRENCY,
            "source": "wallet_topup",
            "status": status,
            "payment_method": method,
            "payment_transaction_id": charge.payment_id,
        },
    )
    audit_change("Transactions", "INSERT", _audit_details(row))
    return row


def _top_up_result(row: Row[Any], redirect_url: str | None) -> TopUpResult:
    if row.status == "pending" and redirect_url:
        return TopUpResult(row, redirect_url, row.created_at + PENDING_PAYMENT_TTL)
    return TopUpResult(row)


async def _replayed_top_up(
    conn: AsyncConnection, user_id: int, result: Mapping[str, Any]
) -> TopUpResult:
    row = await queries.get_transaction(conn, int(result["txn_id"]), user_id=user_id)
    if row is None:  # the ledger never loses rows; defensive
        raise NotFound("the original transaction no longer exists", reason="NOT_FOUND")
    redirect = result.get("redirect_url")
    return _top_up_result(row, str(redirect) if redirect else None)


def _audit_details(row: Row[Any], **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {
        "txn_id": row.txn_id,
        "user_id": row.user_id,
        "category": row.category,
        "txn_type": row.txn_type,
        "source": row.source,
        "status": row.status,
        "amount_minor": to_minor(row.amount),
        "currency": row.currency,
        "payment_method": row.payment_method,
        "payment_transaction_id": row.payment_transaction_id,
    }
    if row.balance_after is not None:
        details["balance_after_minor"] = to_minor(row.balance_after)
    details.update(extra)
    return details


# --- gateway callback -------------------------------------------------------------------------


@dataclass(frozen=True)
class Confirmation:
    """A ConfirmPayment request. ``outcome``: "success", "failed", "" (not set) or "?"."""

    request_id: str
    txn_id: int
    payment_transaction_id: str
    outcome: str
    failure_reason: str
    fingerprint: str


def validate_confirmation(c: Confirmation) -> None:
    violations: list[FieldViolation] = []
    try:
        idempotency.validate_request_id(c.request_id)
    except InvalidArgument as exc:
        violations.extend(exc.violations)
    if c.txn_id < 0:
        violations.append(FieldViolation("txn_id", "must be a positive id"))
    elif c.txn_id == 0 and not c.payment_transaction_id:
        violations.append(
            FieldViolation("txn_id", "name the transaction by txn_id or payment_transaction_id")
        )
    if c.payment_transaction_id and not _PAYMENT_ID.match(c.payment_transaction_id):
        violations.append(
            FieldViolation("payment_transaction_id", "must be 1-128 printable ASCII characters")
        )
    if c.outcome == "":
        violations.append(FieldViolation("outcome", "is required"))
    elif c.outcome not in ("success", "failed"):
        violations.append(FieldViolation("outcome", "is not a known outcome"))
    elif c.outcome == "success" and not c.payment_transaction_id:
        violations.append(
            FieldViolation("payment_transaction_id", "is required for PAYMENT_OUTCOME_SUCCESS")
        )
    if len(c.failure_reason) > MAX_FAILURE_REASON:
        violations.append(
            FieldViolation("failure_reason", f"must be at most {MAX_FAILURE_REASON} characters")
        )
    if violations:
        raise InvalidArgument.of(violations)


async def confirm_payment(
    conn: AsyncConnection, who: Principal, c: Confirmation, *, referral_reward: Decimal
) -> Row[Any]:
    """Settle a pending external payment, once; idempotent per request_id and per outcome.

    The row is locked first, so concurrent callbacks for one payment serialise: the first
    settles it, the others find it settled with the same outcome and return it unchanged.
    """
    validate_confirmation(c)
    caller = who.subject
    replay = await idempotency.claim(
        conn, caller=caller, request_id=c.request_id, rpc=CONFIRM_RPC, fingerprint=c.fingerprint
    )
    if replay is not None:
        replayed = await queries.get_transaction(conn, int(replay.result["txn_id"]))
        if replayed is None:
            raise NotFound("the original transaction no longer exists")
        return replayed
    if c.txn_id:
        row = await queries.get_transaction(conn, c.txn_id, for_update=True)
    else:
        row = await queries.get_transaction_by_payment_id(
            conn, c.payment_transaction_id, for_update=True
        )
    if row is None:
        raise NotFound("no such transaction", metadata={"txn_id": str(c.txn_id)})
    if row.payment_method not in EXTERNAL_METHODS:
        raise FailedPrecondition(
            "this transaction was not paid through the payment gateway",
            reason="NOT_AN_EXTERNAL_PAYMENT",
        )
    if (
        c.payment_transaction_id
        and row.payment_transaction_id
        and row.payment_transaction_id != c.payment_transaction_id
    ):
        raise FailedPrecondition(
            "payment_transaction_id does not match the transaction's payment",
            reason="PAYMENT_ID_MISMATCH",
        )
    if row.status == "pending":
        row = await _settle(conn, row, c, referral_reward)
    elif row.status != c.outcome:
        raise FailedPrecondition(
            f"the transaction is already settled as {row.status}",
            reason="TRANSACTION_ALREADY_SETTLED",
            metadata={"status": row.status},
        )
    await idempotency.complete(
        conn, caller=caller, request_id=c.request_id, result={"txn_id": row.txn_id}
    )
    return row


async def _settle(
    conn: AsyncConnection, row: Row[Any], c: Confirmation, referral_reward: Decimal
) -> Row[Any]:
    new_payment_id = (
        c.payment_transaction_id
        if c.payment_transaction_id and not row.payment_transaction_id
        else None
    )
    try:
        settled = await queries.settle_transaction(
            conn, row.txn_id, status=c.outcome, payment_transaction_id=new_payment_id
        )
    except IntegrityError as exc:
        raise FailedPrecondition(
            "payment_transaction_id already belongs to another transaction",
            reason="PAYMENT_ID_MISMATCH",
        ) from exc
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == SQLSTATE_INSUFFICIENT_BALANCE:
            raise FailedPrecondition(
                "insufficient wallet balance", reason="INSUFFICIENT_FUNDS"
            ) from None
        raise
    if settled.status == "success" and _is_paid_recharge(settled):
        await _activate_paid_recharge(conn, settled, referral_reward)
    extra: dict[str, Any] = {"previous_status": "pending"}
    if c.outcome == "failed" and c.failure_reason:
        extra["failure_reason"] = c.failure_reason
    audit_change("Transactions", "UPDATE", _audit_details(settled, **extra))
    return settled


def _is_paid_recharge(row: Row[Any]) -> bool:
    return (
        row.category == "service"
        and row.source in PAID_RECHARGE_SOURCES
        and row.plan_id is not None
    )


_RECHARGE_DOMAIN = "server.recharge.domain"


async def _activate_paid_recharge(
    conn: AsyncConnection, row: Row[Any], referral_reward: Decimal
) -> None:
    """Activate the plan of an externally paid recharge, in the settling transaction.

    Imported at call time: the recharge domain imports the wallet package. A build
    without it cannot activate plans, so the confirmation fails (UNAVAILABLE, nothing
    written, the payment stays pending) and the gateway retries it later.
    """
    activate: Callable[..., Awaitable[Any]] | None = None
    try:
        module = importlib.import_module(_RECHARGE_DOMAIN)
    except ModuleNotFoundError as exc:
        if exc.name not in ("server.recharge", _RECHARGE_DOMAIN):
            raise
    else:
        activate = getattr(module, "activate_paid_recharge", None)
    if activate is None:
        raise Unavailable(
            "this server cannot activate paid recharges; retry the confirmation later",
            reason="RECHARGE_ACTIVATION_UNAVAILABLE",
        )
    await activate(conn, row, reward_amount=referral_reward)


async def expire_pending_payments(
    conn: AsyncConnection, *, now: datetime | None = None, ttl: timedelta = PENDING_PAYMENT_TTL
) -> int:
    """Mark external payments still pending after ``ttl`` failed (for the scheduler);
    how many. The change is named for the audit (under the scheduler's job scope).

    A gateway success arriving later for such a row is refused (FAILED_PRECONDITION,
    TRANSACTION_ALREADY_SETTLED) and must be refunded by the gateway (docs/payments.md).
    """
    cutoff = (now or datetime.now(UTC)) - ttl
    failed = await queries.fail_stale_pending(conn, created_before=cutoff)
    if failed:
        audit_change(
            "Transactions",
            "UPDATE",
            {"status": "failed", "reason": "payment_deadline_passed", **listed(failed)},
        )
    return len(failed)


# --- reading the ledger -----------------------------------------------------------------------


async def get_transaction(
    conn: AsyncConnection, who: Principal, matrix: PermissionMatrix, txn_id: int
) -> Row[Any]:
    if txn_id <= 0:
        raise InvalidArgument.field("txn_id", "must be a positive id")
    row: Row[Any] | None = None
    if who.kind == "user":
        row = await queries.get_transaction(conn, txn_id, user_id=who.numeric_id)
    elif await matrix.allows(who.role_id, "Transactions", "read"):
        row = await queries.get_transaction(conn, txn_id)
    if row is None:
        raise NotFound(f"transaction {txn_id} not found", metadata={"txn_id": str(txn_id)})
    return row


@dataclass(frozen=True)
class TransactionFilter:
    """ListTransactions filters; ``None`` does not filter."""

    category: str | None = None
    txn_type: str | None = None
    source: str | None = None
    status: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


async def list_transactions(
    conn: AsyncConnection, who: Principal, flt: TransactionFilter, page_size: int, token: str
) -> tuple[Rows, str]:
    if (
        flt.created_after is not None
        and flt.created_before is not None
        and flt.created_after >= flt.created_before
    ):
        raise InvalidArgument.field("created_before", "must be later than created_after")
    owner = who.numeric_id if who.kind == "user" else None
    filters = asdict(flt)
    page = pagination.parse(page_size, token, {"transactions": filters, "owner": who.subject})
    after = pagination.time_keyset(page.after)
    if owner is None:
        return [], ""
    rows = await queries.list_transactions(
        conn,
        user_id=owner,
        category=flt.category,
        txn_type=flt.txn_type,
        source=flt.source,
        status=flt.status,
        created_after=flt.created_after,
        created_before=flt.created_before,
        after=after,
        limit=page.fetch,
    )
    return pagination.time_page(rows, page, "created_at", "txn_id")


async def list_referral_rewards(
    conn: AsyncConnection, who: Principal, status: str | None, page_size: int, token: str
) -> tuple[Rows, str]:
    page = pagination.parse(
        page_size, token, {"referral_rewards": {"status": status}, "owner": who.subject}
    )
    after = pagination.time_keyset(page.after)
    if who.kind != "user":
        return [], ""
    rows = await queries.list_referral_rewards(
        conn, referrer_id=who.numeric_id, status=status, after=after, limit=page.fetch
    )
    return pagination.time_page(rows, page, "created_at", "reward_id")
