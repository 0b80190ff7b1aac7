"""Refunds and wallet adjustments: the rules (no grpc; every function takes the
connection it works on as ``conn``; server/admin/money/flows.py and the servicer open
the transactions).

Refunds (RefundTransaction; docs/payments.md "Refunds"). A refund is a new ledger row
(source ``refund``, ``refund_of_txn_id`` = the original), never an edit of the original.
What is left to refund is the original's amount less its refunds that succeeded or are
pending, plus the reversals of refunds the gateway refused; :func:`begin_refund` reads
it after locking the original row (``FOR UPDATE``), so concurrent refunds of one
transaction queue on that lock and never exceed it. By how the original was paid:

- from the wallet (a wallet recharge): the refund credits the wallet (``success`` at
  once), in one transaction;
- an externally paid recharge (category ``service``): the refund row is ``pending``
  (it reserves the amount); the gateway refunds outside any transaction; then the row
  succeeds with the gateway's refund id, or fails if the gateway refused;
- a top-up (a wallet credit paid by the gateway): the refund debits the wallet at once
  (``success``; the wallet trigger refuses money already spent: INSUFFICIENT_FUNDS),
  then the gateway refunds and the row gets its refund id; if the gateway refused, a
  reversal row (a wallet credit linked to the refund) puts the money back.

The idempotency key is completed with the ledger row in the first transaction; a retry
with the same key finds the row and, when the gateway step is still outstanding (the
gateway could not be reached, or the process stopped), repeats it under the same
gateway reference (``refund:txn:<refund txn_id>``), which the gateway makes idempotent:
money is refunded once and recorded once. Without a retry, the refund-recovery job
(server/admin/money/flows.py ``recover_refunds``) does the same for the refunds left
outstanding past the grace period (:func:`outstanding_refunds`).

Adjustments (AdjustWallet): a wallet credit or debit (source ``adjustment``) with a
reason, recorded in ``wallet_adjustments``. At or below the approval threshold it
succeeds at once; above it, the ledger row is ``pending`` (nothing moves) until a
second admin approves it (the row succeeds: the wallet trigger moves the balance and
refuses an overdraft) or anyone allowed rejects it (the row fails).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.admin.money import queries
from server.audit.outbox import AuditEvent, record
from server.audit.scope import audit_change, current_rpc, current_scope
from server.auth.principal import Principal
from server.core import idempotency, pagination
from server.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from server.core.money import CURRENCY, from_minor, to_minor
from server.ledger import domain as ledger
from server.ledger.domain import Transaction
from server.recharge import domain as recharge

#: What can be refunded: a recharge (also by autopay or PayBill) or a top-up.
RECHARGE_SOURCES = frozenset({"recharge", "autopay"})
TOP_UP = "wallet_topup"
WALLET = "Wallet"
MAX_REASON_CHARS = 500
#: The largest adjustment one call may ask for (Rs 1 crore), far below what the ledger's
#: NUMERIC(10, 2) holds.
MAX_ADJUSTMENT_MINOR = 1_000_000_000
SQLSTATE_NUMERIC_OVERFLOW = "22003"
SQLSTATE_FOREIGN_KEY = "23503"

NOT_REFUNDABLE = "NOT_REFUNDABLE"
REFUND_EXCEEDS_REMAINING = "REFUND_EXCEEDS_REMAINING"
REFUND_REFUSED = "REFUND_REFUSED"
SAME_ADMIN = "SAME_ADMIN"
ADJUSTMENT_NOT_PENDING = "ADJUSTMENT_NOT_PENDING"
BALANCE_LIMIT = "BALANCE_LIMIT"

#: How a refund reaches the customer.
ROUTE_WALLET = "wallet"
ROUTE_GATEWAY = "gateway"


# --- checks shared by every call -------------------------------------------------------------


def _admin_id(who: Principal) -> int:
    if who.kind != "admin":
        raise PermissionDenied("only admins move money by hand", reason="ADMIN_ONLY")
    return who.numeric_id


def _reason_violation(field: str, reason: str) -> FieldViolation | None:
    if not reason.strip():
        return FieldViolation(field, "is required")
    if len(reason) > MAX_REASON_CHARS:
        return FieldViolation(field, f"must be at most {MAX_REASON_CHARS} characters")
    return None


def _request_id_violations(request_id: str) -> list[FieldViolation]:
    try:
        idempotency.validate_request_id(request_id)
    except InvalidArgument as exc:
        return list(exc.violations)
    return []


def _id_violation(field: str, value: int) -> FieldViolation | None:
    return FieldViolation(field, "must be a positive id") if value <= 0 else None


def _check(*violations: FieldViolation | None, more: Sequence[FieldViolation] = ()) -> None:
    found = [*more, *(v for v in violations if v is not None)]
    if found:
        raise InvalidArgument.of(found)


async def _audit_now(
    conn: AsyncConnection, table: str, action: str, details: Mapping[str, Any]
) -> None:
    """A further audit event of this call, written now on ``conn`` (the call's first
    change was already audited in an earlier transaction)."""
    scope = current_scope.get()
    if scope is None:
        return
    await record(
        conn,
        AuditEvent(
            actor=scope.actor,
            table_name=table,
            action_type=action,
            details=details,
            rpc=scope.rpc,
            request_id=scope.request_id,
            peer=scope.peer,
        ),
    )


# --- refunds ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundOrder:
    request_id: str
    txn_id: int
    #: None: everything not yet refunded.
    amount_minor: int | None
    currency: str
    reason: str
    fingerprint: str


@dataclass(frozen=True)
class RefundStep:
    """The refund's ledger row as the first transaction left it (or a replay found it)."""

    refund: Transaction
    original: Transaction
    total_refunded: Decimal

    @property
    def route(self) -> str:
        return ROUTE_GATEWAY if self.original.is_external else ROUTE_WALLET

    @property
    def gateway_reference(self) -> str:
        """Our reference of the gateway refund: one per refund row, stable across retries."""
        return f"refund:txn:{self.refund.txn_id}"


def check_refund_order(order: RefundOrder) -> None:
    amount = None
    if order.amount_minor is not None and order.amount_minor <= 0:
        amount = FieldViolation("amount", "must be positive (leave it unset to refund the rest)")
    currency = (
        FieldViolation("amount.currency_code", f"only {CURRENCY} is accepted")
        if order.currency not in ("", CURRENCY)
        else None
    )
    _check(
        _id_violation("txn_id", order.txn_id),
        amount,
        currency,
        _reason_violation("reason", order.reason),
        more=_request_id_violations(order.request_id),
    )


def _refundable(original: Transaction) -> None:
    """A successful recharge (paid from the wallet or by the gateway) or top-up."""
    why = None
    if original.status != "success":
        why = f"the transaction is {original.status}, only successful ones can be refunded"
    elif original.source in RECHARGE_SOURCES:
        if original.txn_type != "debit":
            why = "not a recharge payment"
        elif not original.is_external and original.payment_method != WALLET:
            why = "the recharge was not paid from the wallet or through the gateway"
    elif original.source == TOP_UP:
        if original.txn_type != "credit" or not original.is_external:
            why = "not a top-up paid through the gateway"
    else:
        why = "only recharges and top-ups can be refunded"
    if original.is_external and not original.payment_transaction_id:
        why = why or "the payment has no gateway id to refund"
    if why is not None:
        raise FailedPrecondition(
            why,
            reason=NOT_REFUNDABLE,
            metadata={"txn_id": str(original.txn_id), "status": original.status},
        )


def _refund_row(original: Transaction, amount: Decimal) -> dict[str, Any]:
    """The refund's ledger row: the opposite movement of the original, linked to it."""
    opposite = "credit" if original.txn_type == "debit" else "debit"
    if original.is_external:
        # A wallet movement (a top-up) is undone at once (the wallet pays the refund);
        # a service payment's refund waits for the gateway.
        status = "success" if original.category == "wallet" else "pending"
    else:
        status = "success"
    return {
        "user_id": original.user_id,
        "category": original.category,
        "txn_type": opposite,
        "amount": amount,
        "service_type": original.service_type,
        "plan_id": original.plan_id,
        "offer_id": original.offer_id,
        "from_phone_number": original.from_phone_number,
        "to_phone_number": original.to_phone_number,
        "source": "refund",
        "status": status,
        "payment_method": original.payment_method,
        "refund_of_txn_id": original.txn_id,
        "currency": original.currency,
    }


async def _replayed_refund(result: Mapping[str, Any], *, conn: AsyncConnection) -> RefundStep:
    refund = await ledger.get(int(result["refund_txn_id"]), conn=conn)
    original = await ledger.get(int(result["original_txn_id"]), conn=conn)
    if refund is None or original is None:
        raise NotFound("the original refund no longer exists")
    return RefundStep(refund, original, from_minor(int(result["total_refunded_minor"])))


async def begin_refund(who: Principal, order: RefundOrder, *, conn: AsyncConnection) -> RefundStep:
    """The refund's ledger row, its key and its audit event, in the caller's transaction
    (a wallet refund is complete after it; a gateway refund then needs the gateway)."""
    check_refund_order(order)
    _admin_id(who)
    caller = who.subject
    replay = await idempotency.claim(
        conn,
        caller=caller,
        request_id=order.request_id,
        rpc=current_rpc(),
        fingerprint=order.fingerprint,
    )
    if replay is not None:
        return await _replayed_refund(replay.result, conn=conn)
    original = await ledger.get(order.txn_id, conn=conn, for_update=True)
    if original is None:
        raise NotFound(
            f"transaction {order.txn_id} not found", metadata={"txn_id": str(order.txn_id)}
        )
    _refundable(original)
    already = await ledger.refunded(original.txn_id, conn=conn)
    remaining = original.amount - already
    amount = remaining if order.amount_minor is None else from_minor(order.amount_minor)
    if remaining <= 0 or amount > remaining:
        raise FailedPrecondition(
            "the amount is more than what is left to refund"
            if remaining > 0
            else "the transaction is already fully refunded",
            reason=REFUND_EXCEEDS_REMAINING,
            metadata={
                "txn_id": str(original.txn_id),
                "remaining_minor": str(to_minor(max(remaining, Decimal(0)))),
            },
        )
    try:
        refund = await ledger.insert(_refund_row(original, amount), conn=conn)
    except DBAPIError as exc:
        refused = ledger.insufficient_funds(exc, amount)
        if refused is not None:
            refused.message = (
                "the wallet no longer holds the amount to refund (it was spent): "
                "refund less, or nothing"
            )
            raise refused from None
        raise
    total = already + amount
    plan_ended = None
    step = RefundStep(refund, original, total)
    if step.route == ROUTE_WALLET:
        plan_ended = await _end_plan_if_fully_refunded(original, total, conn=conn)
    await idempotency.complete(
        conn,
        caller=caller,
        request_id=order.request_id,
        result={
            "refund_txn_id": refund.txn_id,
            "original_txn_id": original.txn_id,
            "total_refunded_minor": to_minor(total),
        },
    )
    audit_change(
        "Transactions",
        "INSERT",
        refund.audit_details(
            refund_of_txn_id=original.txn_id,
            reason=order.reason,
            route=step.route,
            total_refunded_minor=to_minor(total),
            ended_active_plan_id=plan_ended,
        ),
    )
    return step


async def _end_plan_if_fully_refunded(
    original: Transaction, total: Decimal, *, conn: AsyncConnection
) -> int | None:
    """The documented rule: a recharge refunded in full loses its plan now; a partial
    refund keeps it."""
    if original.source not in RECHARGE_SOURCES or total < original.amount:
        return None
    return await recharge.end_plan_of_refunded(original, conn=conn)


async def outstanding(refund: Transaction, *, conn: AsyncConnection) -> bool:
    """Whether a refund still waits for the gateway (its first step committed, the
    gateway's answer not recorded)."""
    if refund.status == "pending":
        return True
    if refund.status != "success" or not refund.is_external or refund.payment_transaction_id:
        return False
    return await ledger.reversal_of(refund.txn_id, conn=conn) is None


async def refused_already(refund: Transaction, *, conn: AsyncConnection) -> bool:
    """Whether the gateway refused this refund (the row failed, or was reversed)."""
    if refund.status == "failed":
        return True
    return refund.is_external and await ledger.reversal_of(refund.txn_id, conn=conn) is not None


def refund_refused(step: RefundStep, why: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"the payment gateway refused the refund ({why}); nothing was refunded",
        reason=REFUND_REFUSED,
        metadata={"txn_id": str(step.original.txn_id), "refund_txn_id": str(step.refund.txn_id)},
    )


@dataclass(frozen=True)
class FinishedRefund:
    step: RefundStep
    #: False: the answer was recorded before (by a concurrent retry or the recovery
    #: job), this one changed nothing.
    recorded: bool
    #: The gateway refused the refund (now or before): nothing was refunded.
    refused: bool


async def finish_refund(
    step: RefundStep, *, refund_id: str | None, refund_status: str, conn: AsyncConnection
) -> FinishedRefund:
    """Record the gateway's answer for a refund that waited for it: accepted
    (``refund_id``) or refused (None). Once: a refund already finished (by a concurrent
    retry, or the recovery job) is returned as it is (``recorded`` False). The RPC's
    step 3 and the refund-recovery job (server/admin/money/flows.py) both record here."""
    refund = await ledger.get(step.refund.txn_id, conn=conn, for_update=True)
    assert refund is not None
    if not await outstanding(refund, conn=conn):
        refused = await refused_already(refund, conn=conn)
        return FinishedRefund(
            RefundStep(refund, step.original, step.total_refunded), False, refused
        )
    details: dict[str, Any] = {"refund_status": refund_status}
    if refund_id is not None:
        if refund.status == "pending":
            refund = await ledger.settle(
                refund, outcome="success", payment_transaction_id=refund_id, conn=conn
            )
        else:
            refund = await ledger.record_payment_id(refund, refund_id, conn=conn)
        details["gateway_refund_id"] = refund_id
        total = await ledger.refunded(step.original.txn_id, conn=conn)
        ended = await _end_plan_if_fully_refunded(step.original, total, conn=conn)
        if ended is not None:
            details["ended_active_plan_id"] = ended
    elif refund.status == "pending":
        refund = await ledger.settle(
            refund, outcome="failed", payment_transaction_id=None, conn=conn
        )
    else:
        reversal = await ledger.insert(
            {
                **_refund_row(refund, refund.amount),
                "status": "success",
                "plan_id": step.original.plan_id,
            },
            conn=conn,
        )
        details["reversal_txn_id"] = reversal.txn_id
    await _audit_now(
        conn,
        "Transactions",
        "UPDATE",
        refund.audit_details(refund_of_txn_id=step.original.txn_id, **details),
    )
    return FinishedRefund(
        RefundStep(refund, step.original, step.total_refunded), True, refund_id is None
    )


async def outstanding_refunds(
    *, created_before: datetime, exclude: Sequence[int], limit: int, conn: AsyncConnection
) -> list[RefundStep]:
    """The gateway refunds made before ``created_before`` whose gateway answer was never
    recorded (none of ``exclude``), oldest first, as the steps their RPC would resume."""
    refunds = await ledger.outstanding_refunds(
        created_before=created_before, exclude=exclude, limit=limit, conn=conn
    )
    wanted = sorted({r.refund_of_txn_id for r in refunds if r.refund_of_txn_id is not None})
    originals = {t.txn_id: t for t in await ledger.get_many(wanted, conn=conn)}
    steps = []
    for refund in refunds:
        original = originals.get(refund.refund_of_txn_id or 0)
        if original is not None:
            total = await ledger.refunded(original.txn_id, conn=conn)
            steps.append(RefundStep(refund, original, total))
    return steps


# --- adjustments ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AdjustmentOrder:
    request_id: str
    user_id: int
    #: Signed: positive credits, negative debits; None when unset.
    amount_minor: int | None
    currency: str
    reason: str
    fingerprint: str


@dataclass(frozen=True)
class Adjustment:
    txn: Transaction
    status: str
    reason: str
    requested_by: int
    decided_by: int | None
    decided_at: datetime | None
    decision_note: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: Any, txn: Transaction) -> Adjustment:
        return cls(
            txn,
            row.status,
            row.reason,
            int(row.requested_by),
            row.decided_by,
            row.decided_at,
            row.decision_note,
            row.created_at,
        )

    @property
    def signed_amount(self) -> Decimal:
        return self.txn.amount if self.txn.txn_type == "credit" else -self.txn.amount


def check_adjustment(order: AdjustmentOrder) -> None:
    amount = None
    if not order.amount_minor:
        amount = FieldViolation("amount", "must not be zero (positive credits, negative debits)")
    elif abs(order.amount_minor) > MAX_ADJUSTMENT_MINOR:
        amount = FieldViolation("amount", f"must be at most {MAX_ADJUSTMENT_MINOR} minor units")
    currency = (
        FieldViolation("amount.currency_code", f"only {CURRENCY} is accepted")
        if order.currency not in ("", CURRENCY)
        else None
    )
    _check(
        _id_violation("user_id", order.user_id),
        amount,
        currency,
        _reason_violation("reason", order.reason),
        more=_request_id_violations(order.request_id),
    )


def _money_refused(exc: DBAPIError, amount: Decimal) -> FailedPrecondition | NotFound | None:
    refused = ledger.insufficient_funds(exc, amount)
    if refused is not None:
        return refused
    state = getattr(exc.orig, "sqlstate", None)
    if state == SQLSTATE_NUMERIC_OVERFLOW:
        return FailedPrecondition(
            "the wallet cannot hold that much", reason=BALANCE_LIMIT, metadata={}
        )
    return None


async def _get_adjustment(
    txn_id: int, *, conn: AsyncConnection, for_update: bool = False
) -> Adjustment:
    row = await queries.get_adjustment(conn, txn_id, for_update=for_update)
    txn = await ledger.get(txn_id, conn=conn) if row is not None else None
    if row is None or txn is None:
        raise NotFound(f"wallet adjustment {txn_id} not found", metadata={"txn_id": str(txn_id)})
    return Adjustment.of(row, txn)


async def adjust(
    who: Principal, order: AdjustmentOrder, *, threshold_minor: int, conn: AsyncConnection
) -> Adjustment:
    """Credit or debit a wallet by hand: at once up to ``threshold_minor`` (absolute),
    pending a second admin's approval above it."""
    check_adjustment(order)
    admin = _admin_id(who)
    replay = await idempotency.claim(
        conn,
        caller=who.subject,
        request_id=order.request_id,
        rpc=current_rpc(),
        fingerprint=order.fingerprint,
    )
    if replay is not None:
        return await _get_adjustment(int(replay.result["txn_id"]), conn=conn)
    assert order.amount_minor is not None
    amount = from_minor(abs(order.amount_minor))
    needs_approval = abs(order.amount_minor) > threshold_minor
    try:
        txn = await ledger.insert(
            {
                "user_id": order.user_id,
                "category": "wallet",
                "txn_type": "credit" if order.amount_minor > 0 else "debit",
                "amount": amount,
                "source": "adjustment",
                "status": "pending" if needs_approval else "success",
                "payment_method": WALLET,
            },
            conn=conn,
        )
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) == SQLSTATE_FOREIGN_KEY:
            raise NotFound(
                f"user {order.user_id} not found", metadata={"user_id": str(order.user_id)}
            ) from None
        raise
    except DBAPIError as exc:
        refused = _money_refused(exc, amount)
        if refused is not None:
            raise refused from None
        raise
    row = await queries.insert_adjustment(
        conn,
        txn_id=txn.txn_id,
        user_id=order.user_id,
        requested_by=admin,
        reason=order.reason,
        status="pending" if needs_approval else "applied",
    )
    await idempotency.complete(
        conn, caller=who.subject, request_id=order.request_id, result={"txn_id": txn.txn_id}
    )
    audit_change(
        "WalletAdjustments",
        "INSERT",
        txn.audit_details(
            reason=order.reason,
            adjustment_status=row.status,
            approval_threshold_minor=threshold_minor,
        ),
    )
    return Adjustment.of(row, txn)


@dataclass(frozen=True)
class Decision:
    request_id: str
    txn_id: int
    note: str
    fingerprint: str


def check_decision(decision: Decision, *, note_field: str, note_required: bool) -> None:
    note = _reason_violation(note_field, decision.note) if note_required or decision.note else None
    _check(
        _id_violation("txn_id", decision.txn_id),
        note,
        more=_request_id_violations(decision.request_id),
    )


async def decide(
    who: Principal, decision: Decision, *, approve: bool, conn: AsyncConnection
) -> Adjustment:
    """Approve (another admin than the requester: the wallet moves, the balance checked
    again by the wallet trigger) or reject (the row fails) a pending adjustment, once
    per request_id."""
    check_decision(decision, note_field="note" if approve else "reason", note_required=not approve)
    admin = _admin_id(who)
    replay = await idempotency.claim(
        conn,
        caller=who.subject,
        request_id=decision.request_id,
        rpc=current_rpc(),
        fingerprint=decision.fingerprint,
    )
    if replay is not None:
        return await _get_adjustment(int(replay.result["txn_id"]), conn=conn)
    current = await _get_adjustment(decision.txn_id, conn=conn, for_update=True)
    if current.status != "pending":
        raise FailedPrecondition(
            f"the adjustment is {current.status}, not pending",
            reason=ADJUSTMENT_NOT_PENDING,
            metadata={"txn_id": str(decision.txn_id), "status": current.status},
        )
    if approve and current.requested_by == admin:
        raise FailedPrecondition(
            "a second admin must approve: the requester cannot approve their own adjustment",
            reason=SAME_ADMIN,
            metadata={"txn_id": str(decision.txn_id)},
        )
    try:
        txn = await ledger.settle(
            current.txn,
            outcome="success" if approve else "failed",
            payment_transaction_id=None,
            conn=conn,
        )
    except DBAPIError as exc:
        refused = _money_refused(exc, current.txn.amount)
        if refused is not None:
            raise refused from None
        raise
    row = await queries.decide(
        conn,
        decision.txn_id,
        status="approved" if approve else "rejected",
        decided_by=admin,
        note=decision.note or None,
    )
    await idempotency.complete(
        conn,
        caller=who.subject,
        request_id=decision.request_id,
        result={"txn_id": decision.txn_id},
    )
    audit_change(
        "WalletAdjustments",
        "UPDATE",
        txn.audit_details(
            adjustment_status=row.status,
            requested_by=current.requested_by,
            decided_by=admin,
            decision_note=decision.note,
        ),
    )
    return Adjustment.of(row, txn)


async def list_adjustments(
    *,
    status: str | None,
    user_id: int,
    page_size: int,
    page_token: str,
    conn: AsyncConnection,
) -> tuple[list[Adjustment], str]:
    if user_id < 0:
        raise InvalidArgument.field("user_id", "must be a positive id (0: every customer)")
    page = pagination.parse(
        page_size, page_token, {"wallet_adjustments": {"status": status, "user_id": user_id}}
    )
    rows = await queries.list_adjustments(
        conn,
        status=status,
        user_id=user_id or None,
        after=pagination.time_keyset(page.after),
        limit=page.fetch,
    )
    items, token = pagination.time_page(rows, page, "created_at", "txn_id")
    txns = {t.txn_id: t for t in await ledger.get_many([r.txn_id for r in items], conn=conn)}
    return [Adjustment.of(r, txns[r.txn_id]) for r in items], token
