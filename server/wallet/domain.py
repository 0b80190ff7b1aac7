"""Wallet rules: balances, top-ups through the payment gateway, the gateway callback
(settling pending payments), ledger reads and referral rewards (no grpc here; every
function takes the connection it works on as ``conn``; server/wallet/flows.py opens
the transactions of work that spans several or calls the gateway).

Money moves only through ledger rows (server/ledger): this module inserts or settles
``transactions`` rows and the database trigger ``update_wallet_balance`` moves
``users.wallet_balance`` (docs/data-model.md, "The wallet trigger").

Ownership: a user sees and spends only their own wallet and transactions; another
user's transaction is NOT_FOUND. Admins (and service accounts) whose role grants
``Transactions``/read may read any transaction with GetTransaction; ListTransactions
and ListReferralRewards always list the caller's own rows (the contract has no user
filter; AdminService is the place for listing other users' ledgers), so for admins
and services they are empty. Users are ownership-scoped whatever their role says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server.audit.scope import audit_change, current_rpc, listed
from server.auth.access import PermissionMatrix
from server.auth.principal import Principal, customer_id
from server.core import idempotency, pagination
from server.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from server.core.idempotency import Replay
from server.core.money import CURRENCY, from_minor, to_minor
from server.ledger import domain as ledger
from server.ledger.domain import PENDING_PAYMENT_TTL, ReferralReward, Transaction
from server.payments import signing
from server.payments.attempts import domain as attempts
from server.payments.gateway import (
    EXTERNAL_METHODS,
    Callback,
    ChargeResult,
    CheckoutCallback,
    RefundResult,
    VerifiedPayment,
)
from server.wallet import queries

#: Top-up limits, in paise: Rs 1 to Rs 1,00,000 per top-up.
MIN_TOP_UP_MINOR = 100
MAX_TOP_UP_MINOR = 100_000 * 100

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
#: A success reported for a payment already failed (e.g. expired unpaid), or the reverse.
TRANSACTION_ALREADY_SETTLED = "TRANSACTION_ALREADY_SETTLED"


# --- wallet ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wallet:
    user_id: int
    balance: Decimal
    updated_at: datetime
    status: str


async def get_wallet(who: Principal, *, conn: AsyncConnection) -> Wallet:
    row = await queries.get_wallet(conn, customer_id(who, "a wallet"))
    if row is None:
        raise FailedPrecondition("this account has no wallet", reason="NO_WALLET")
    return Wallet(int(row.user_id), row.wallet_balance, row.updated_at, row.status)


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
    transaction: Transaction
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


@dataclass(frozen=True)
class TopUpIntent:
    """A top-up's charge and what recording it needs, without the request: the payment
    attempt's ``intent`` (server/payments/attempts), from which the recovery job records
    it exactly as the live call would."""

    charge: attempts.Charge
    amount_minor: int
    method: str

    @classmethod
    def of(cls, who: Principal, order: TopUpOrder) -> TopUpIntent:
        """The intent of a validated order, in the call's scope."""
        assert order.amount_minor is not None
        return cls(
            attempts.Charge(
                reference=gateway_reference(who.subject, order.request_id),
                kind=attempts.TOP_UP,
                caller=who.subject,
                request_id=order.request_id,
                rpc=current_rpc(),
                fingerprint=order.fingerprint,
                user_id=who.numeric_id,
                intent={
                    "amount_minor": order.amount_minor,
                    "currency": CURRENCY,
                    "method": order.method,
                },
            ),
            order.amount_minor,
            order.method,
        )

    @classmethod
    def of_attempt(cls, attempt: attempts.Attempt) -> TopUpIntent:
        intent = attempt.charge.intent
        return cls(attempt.charge, int(intent["amount_minor"]), str(intent["method"]))

    @property
    def amount(self) -> Decimal:
        return from_minor(self.amount_minor)


async def begin_top_up(
    who: Principal, order: TopUpOrder, *, conn: AsyncConnection
) -> tuple[TopUpIntent, Replay | None]:
    """Step 1 of a top-up (its own committed transaction): check the customer, claim
    the idempotency key "in progress" and write the payment attempt ``charging``. A
    replay of a finished top-up returns its key's result."""
    user_id = customer_id(who, "a wallet")
    validate_top_up(order)
    owner = await queries.get_wallet(conn, user_id)
    if owner is None:
        raise FailedPrecondition("this account has no wallet", reason="NO_WALLET")
    if owner.status != "active":
        raise PermissionDenied("this account is blocked", reason="ACCOUNT_BLOCKED")
    intent = TopUpIntent.of(who, order)
    replay = await idempotency.claim_for_external_call(
        conn,
        caller=who.subject,
        request_id=order.request_id,
        rpc=intent.charge.rpc,
        fingerprint=order.fingerprint,
    )
    if replay is not None:
        return intent, replay
    done = await attempts.begin(intent.charge, conn=conn)
    if done is not None:  # recorded long ago (its key expired since): the same outcome
        result = {"txn_id": done.txn_id}
        await idempotency.complete(
            conn, caller=who.subject, request_id=order.request_id, result=result
        )
        return intent, Replay(result)
    return intent, None


async def record_top_up(
    intent: TopUpIntent, charge: ChargeResult, *, conn: AsyncConnection
) -> TopUpResult:
    """Step 3 (after the gateway authorised the charge or left it pending), in one
    transaction: the credit row (``success``: the trigger credits the wallet;
    ``pending``: nothing moves until ConfirmPayment), the completed key and the attempt
    ``recorded``. The attempt is locked first: a charge already recorded (by the
    recovery job, or by the live call while the recovery job asked) is replayed, never
    recorded twice. The recovery job records through here too."""
    attempt = await attempts.lock(intent.charge.reference, conn=conn)
    if attempt is not None and attempt.state == attempts.RECORDED:
        return await recorded_top_up(attempt, conn=conn)
    await attempts.reclaim_key(intent.charge, conn=conn)
    txn = await ledger.insert(
        {
            "user_id": intent.charge.user_id,
            "category": "wallet",
            "txn_type": "credit",
            "amount": intent.amount,
            "currency": CURRENCY,
            "source": "wallet_topup",
            "status": "success" if charge.status == "authorised" else "pending",
            "payment_method": intent.method,
            "payment_transaction_id": charge.payment_id,
        },
        conn=conn,
    )
    audit_change("Transactions", "INSERT", txn.audit_details())
    result: dict[str, Any] = {"txn_id": txn.txn_id}
    if charge.status == "pending" and charge.redirect_url:
        result["redirect_url"] = charge.redirect_url
    await idempotency.complete(
        conn, caller=intent.charge.caller, request_id=intent.charge.request_id, result=result
    )
    await attempts.recorded(
        attempt, intent.charge, payment_id=charge.payment_id, txn_id=txn.txn_id, conn=conn
    )
    return _top_up_result(txn, result.get("redirect_url"))


def _top_up_result(txn: Transaction, redirect_url: str | None) -> TopUpResult:
    if txn.status == "pending" and redirect_url:
        return TopUpResult(txn, redirect_url, txn.pending_until)
    return TopUpResult(txn)


async def replayed_top_up(user_id: int, replay: Replay, *, conn: AsyncConnection) -> TopUpResult:
    txn = await ledger.get(int(replay.result["txn_id"]), user_id=user_id, conn=conn)
    if txn is None:  # the ledger never loses rows; defensive
        raise NotFound("the original transaction no longer exists", reason="NOT_FOUND")
    redirect = replay.result.get("redirect_url")
    return _top_up_result(txn, str(redirect) if redirect else None)


async def recorded_top_up(attempt: attempts.Attempt, *, conn: AsyncConnection) -> TopUpResult:
    """The outcome of a top-up whose attempt is recorded (its key's result)."""
    stored = await idempotency.stored_result(
        conn, caller=attempt.charge.caller, request_id=attempt.charge.request_id
    )
    result = stored if stored is not None else {"txn_id": attempt.txn_id}
    return await replayed_top_up(attempt.charge.user_id, Replay(result), conn=conn)


# --- gateway callback -------------------------------------------------------------------------

#: Largest webhook body read (the gateway's events are a few KiB).
MAX_WEBHOOK_BODY = 256 * 1024
#: ErrorInfo reasons of refused callbacks (server/payments/signing.py names the others).
CALLBACK_UNSIGNED = "CALLBACK_UNSIGNED"
CALLBACK_MALFORMED = signing.MALFORMED


@dataclass(frozen=True)
class Confirmation:
    """A ConfirmPayment request: the gateway's callback and the deprecated fields.

    ``outcome``: "success", "failed", "" (not set) or "?" (an unknown value);
    ``callback``: the gateway's callback, unchanged (None: the request carries none)."""

    request_id: str
    txn_id: int
    payment_transaction_id: str
    outcome: str
    failure_reason: str
    callback: Callback | None
    fingerprint: str


def validate_confirmation(c: Confirmation) -> None:
    """Everything that can be checked before the gateway verifies the callback. A
    missing callback (or signature) is reason ``CALLBACK_UNSIGNED``; a callback with a
    field missing or out of bounds ``CALLBACK_MALFORMED``."""
    violations: list[FieldViolation] = []
    reason = "INVALID_ARGUMENT"
    try:
        idempotency.validate_request_id(c.request_id)
    except InvalidArgument as exc:
        violations.extend(exc.violations)
    if c.txn_id < 0:
        violations.append(FieldViolation("txn_id", "must be a positive id"))
    if c.payment_transaction_id and not _PAYMENT_ID.match(c.payment_transaction_id):
        violations.append(
            FieldViolation("payment_transaction_id", "must be 1-128 printable ASCII characters")
        )
    if c.outcome == "?":
        violations.append(FieldViolation("outcome", "is not a known outcome"))
    if len(c.failure_reason) > MAX_FAILURE_REASON:
        violations.append(
            FieldViolation("failure_reason", f"must be at most {MAX_FAILURE_REASON} characters")
        )
    unsigned: list[FieldViolation] = []
    malformed: list[FieldViolation] = []
    if c.callback is None:
        unsigned.append(
            FieldViolation(
                "callback", "is required: forward the gateway's signed checkout result or webhook"
            )
        )
    elif isinstance(c.callback, CheckoutCallback):
        if not c.callback.signature:
            unsigned.append(FieldViolation("callback.checkout.signature", "is required"))
        for name in ("order_id", "payment_id"):
            if not _PAYMENT_ID.match(getattr(c.callback, name)):
                malformed.append(
                    FieldViolation(
                        f"callback.checkout.{name}", "must be 1-128 printable ASCII characters"
                    )
                )
    else:
        if not c.callback.signature:
            unsigned.append(FieldViolation("callback.webhook.signature", "is required"))
        if not c.callback.body:
            malformed.append(FieldViolation("callback.webhook.body", "is required"))
        elif len(c.callback.body) > MAX_WEBHOOK_BODY:
            malformed.append(
                FieldViolation("callback.webhook.body", f"must be at most {MAX_WEBHOOK_BODY} bytes")
            )
    if malformed:
        reason = CALLBACK_MALFORMED
    if unsigned:
        reason = CALLBACK_UNSIGNED
    violations.extend(unsigned + malformed)
    if violations:
        names = ", ".join(v.field for v in violations)
        raise InvalidArgument(f"invalid request: {names}", reason=reason, violations=violations)


def _agrees(c: Confirmation, verified: VerifiedPayment) -> None:
    """The deprecated fields, when set, must say what the verified callback says."""
    if c.payment_transaction_id and c.payment_transaction_id != verified.payment_id:
        raise FailedPrecondition(
            "payment_transaction_id is not the charge the callback reports",
            reason="PAYMENT_ID_MISMATCH",
        )
    if c.outcome and c.outcome != verified.outcome:
        raise InvalidArgument.field(
            "outcome", "does not match the outcome the gateway's callback reports"
        )


def _same_amount(txn: Transaction, verified: VerifiedPayment) -> None:
    if verified.amount != txn.amount or verified.currency.strip().upper() != txn.currency:
        raise FailedPrecondition(
            "the callback's amount or currency differs from the transaction's; nothing changed",
            reason="PAYMENT_AMOUNT_MISMATCH",
            metadata={
                "txn_id": str(txn.txn_id),
                "expected_amount_minor": str(to_minor(txn.amount)),
                "expected_currency": txn.currency,
                "callback_amount_minor": str(to_minor(verified.amount)),
                "callback_currency": verified.currency[:8],
            },
        )


async def _payment_of(
    c: Confirmation, verified: VerifiedPayment, *, for_update: bool, conn: AsyncConnection
) -> Transaction:
    txn = await ledger.get_by_payment_id(verified.payment_id, for_update=for_update, conn=conn)
    if txn is None:
        raise NotFound(
            "no transaction for the callback's charge",
            reason="PAYMENT_NOT_FOUND",
            metadata={"payment_transaction_id": verified.payment_id},
        )
    if c.txn_id and c.txn_id != txn.txn_id:
        raise FailedPrecondition(
            "txn_id is not the transaction of the charge the callback reports",
            reason="PAYMENT_ID_MISMATCH",
        )
    if not txn.is_external:
        raise FailedPrecondition(
            "this transaction was not paid through the payment gateway",
            reason="NOT_AN_EXTERNAL_PAYMENT",
        )
    _same_amount(txn, verified)
    return txn


async def settle_payment(
    who: Principal, c: Confirmation, verified: VerifiedPayment, *, conn: AsyncConnection
) -> tuple[Transaction, bool]:
    """Settle the pending payment a verified callback reports, once; idempotent per
    request_id and per outcome. Returns the row and whether this call settled it (the
    caller then finishes what the payment bought, in the same transaction:
    server/wallet/flows.py).

    The callback's charge names the row (``transactions.payment_transaction_id``); its
    amount and currency must be the row's (``PAYMENT_AMOUNT_MISMATCH`` otherwise,
    nothing written). The row is locked first, so concurrent callbacks for one payment
    serialise: the first settles it, the others find it settled with the same outcome
    and return it unchanged. A genuine event with no final outcome changes nothing.
    """
    _agrees(c, verified)
    if verified.outcome is None:  # e.g. payment.authorized: wait for the final event
        return await _payment_of(c, verified, for_update=False, conn=conn), False
    caller = who.subject
    replay = await idempotency.claim(
        conn, caller=caller, request_id=c.request_id, rpc=current_rpc(), fingerprint=c.fingerprint
    )
    if replay is not None:
        replayed = await ledger.get(int(replay.result["txn_id"]), conn=conn)
        if replayed is None:
            raise NotFound("the original transaction no longer exists")
        return replayed, False
    txn = await _payment_of(c, verified, for_update=True, conn=conn)
    settled_now = False
    if txn.status == "pending":
        txn = await ledger.settle(
            txn, outcome=verified.outcome, payment_transaction_id=None, conn=conn
        )
        extra: dict[str, Any] = {"previous_status": "pending"}
        if verified.gateway_payment_id:
            extra["gateway_payment_id"] = verified.gateway_payment_id
        reason = verified.failure_reason or c.failure_reason
        if verified.outcome == "failed" and reason:
            extra["failure_reason"] = reason
        audit_change("Transactions", "UPDATE", txn.audit_details(**extra))
        settled_now = True
    elif txn.status != verified.outcome:
        raise FailedPrecondition(
            f"the transaction is already settled as {txn.status}",
            reason=TRANSACTION_ALREADY_SETTLED,
            metadata={"status": txn.status, "txn_id": str(txn.txn_id)},
        )
    await idempotency.complete(
        conn, caller=caller, request_id=c.request_id, result={"txn_id": txn.txn_id}
    )
    return txn, settled_now


def late_refund_reference(txn_id: int) -> str:
    """Our reference for refunding a payment that arrived after its transaction failed."""
    return f"late-refund:txn:{txn_id}"


async def record_late_refund(txn_id: int, refund: RefundResult, *, conn: AsyncConnection) -> None:
    """Name the refund of a late payment for the audit (the ledger row stays failed:
    the money went back at the gateway and never reached the wallet)."""
    audit_change(
        "Transactions",
        "UPDATE",
        {
            "txn_id": txn_id,
            "late_payment_refunded": True,
            "refund_id": refund.refund_id,
            "refund_status": refund.status,
            "refund_amount_minor": to_minor(refund.amount),
        },
    )


async def expire_pending_payments(
    *, conn: AsyncConnection, now: datetime | None = None, ttl: timedelta = PENDING_PAYMENT_TTL
) -> int:
    """Mark external payments still pending after ``ttl`` failed (for the scheduler);
    how many. The change is named for the audit (under the scheduler's job scope).

    A genuine gateway success arriving later for such a row is refused
    (FAILED_PRECONDITION, TRANSACTION_ALREADY_SETTLED) and refunded through the gateway
    (server/wallet/flows.py ``confirm_payment``; docs/payments.md).
    """
    cutoff = (now or datetime.now(UTC)) - ttl
    failed = await ledger.fail_stale_pending(created_before=cutoff, conn=conn)
    if failed:
        audit_change(
            "Transactions",
            "UPDATE",
            {"status": "failed", "reason": "payment_deadline_passed", **listed(failed)},
        )
    return len(failed)


# --- reading the ledger -----------------------------------------------------------------------


async def get_transaction(
    who: Principal, matrix: PermissionMatrix, txn_id: int, *, conn: AsyncConnection
) -> Transaction:
    if txn_id <= 0:
        raise InvalidArgument.field("txn_id", "must be a positive id")
    txn: Transaction | None = None
    if who.kind == "user":
        txn = await ledger.get(txn_id, user_id=who.numeric_id, conn=conn)
    elif await matrix.allows(who.role_id, "Transactions", "read"):
        txn = await ledger.get(txn_id, conn=conn)
    if txn is None:
        raise NotFound(f"transaction {txn_id} not found", metadata={"txn_id": str(txn_id)})
    return txn


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
    who: Principal, flt: TransactionFilter, page_size: int, token: str, *, conn: AsyncConnection
) -> tuple[list[Transaction], str]:
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
    rows = await ledger.list_transactions(
        user_id=owner,
        category=flt.category,
        txn_type=flt.txn_type,
        sources=[flt.source] if flt.source is not None else None,
        status=flt.status,
        created_after=flt.created_after,
        created_before=flt.created_before,
        after=after,
        limit=page.fetch,
        conn=conn,
    )
    return pagination.time_page(rows, page, "created_at", "txn_id")


async def list_referral_rewards(
    who: Principal, status: str | None, page_size: int, token: str, *, conn: AsyncConnection
) -> tuple[list[ReferralReward], str]:
    page = pagination.parse(
        page_size, token, {"referral_rewards": {"status": status}, "owner": who.subject}
    )
    after = pagination.time_keyset(page.after)
    if who.kind != "user":
        return [], ""
    rows = await ledger.list_referral_rewards(
        referrer_id=who.numeric_id, status=status, after=after, limit=page.fetch, conn=conn
    )
    return pagination.time_page(rows, page, "created_at", "reward_id")
