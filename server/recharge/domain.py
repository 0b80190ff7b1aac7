"""Recharge rules: who pays, pricing with offers, queueing, idempotent execution (no
grpc; every function takes the connection it works on as ``conn``; server/recharge/
flows.py opens the transactions).

A recharge is paid from the payer's wallet (one server-side function call, one
transaction: server/recharge/wallet.py checks and prices the order, the function writes
the ledger debit, the plan activation or queueing, the cashback, the referral reward,
the idempotency key and the audit event together) or by an external method through
the payment gateway (:func:`claim_external` commits the key and the payment attempt
first, the flow calls the gateway outside any transaction, then :func:`record_external`
writes the ledger row and the plan, once, from the attempt's intent
(:class:`PaidRecharge`), which is also how the recovery job records a charge left
behind; a declined payment leaves nothing behind). Money never moves twice for one
request_id, and a balance never goes negative (the database trigger guarantees it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server.audit.scope import audit_change, current_rpc, listed, take_event
from server.auth.identifiers import normalize_phone
from server.auth.principal import Principal, customer_id
from server.core import idempotency, pagination
from server.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from server.core.money import CURRENCY, to_minor
from server.ledger import domain as ledger
from server.ledger.domain import Transaction
from server.notifications import notify
from server.payments.attempts import domain as attempts
from server.payments.gateway import ChargeResult
from server.plans import domain as plans
from server.plans.catalogue import Catalogue
from server.plans.domain import OfferInfo, PlanInfo
from server.plans.offers import Buyer, evaluate, plan_reasons
from server.recharge import queries

WALLET = "Wallet"
EXTERNAL_METHODS = ("UPI", "Card", "NetBanking")
#: The reason an order whose price (after any discount) is zero is not eligible.
NOTHING_TO_PAY = "NOTHING_TO_PAY"


@dataclass(frozen=True)
class Payer:
    user_id: int
    user_type: str
    phone: str | None
    first_recharge: bool
    #: False for a blocked account (a quote reports ACCOUNT_BLOCKED; a recharge refuses).
    active: bool = True
    #: The wallet balance when it was read (quotes only; a recharge relies on the
    #: wallet trigger, which refuses an overdraft atomically).
    balance: Decimal | None = None


@dataclass(frozen=True)
class Pricing:
    plan: PlanInfo
    offer: OfferInfo | None
    reasons: tuple[tuple[str, str], ...]
    price: Decimal
    discount: Decimal
    cashback: Decimal
    #: Extra allowances of the offer (PlanBenefits-shaped JSON); None if none.
    bonus: Mapping[str, Any] | None = None

    @property
    def eligible(self) -> bool:
        return not self.reasons

    @property
    def to_pay(self) -> Decimal:
        return self.price - self.discount


@dataclass(frozen=True)
class QuoteResult:
    pricing: Pricing
    starts_at: datetime
    ends_at: datetime
    queued: bool


@dataclass(frozen=True)
class Order:
    request_id: str
    phone_number: str
    plan_id: int
    offer_id: int | None
    payment_method: str
    payment_details: Mapping[str, str]
    user_id: int  # 0: the caller
    expected_amount_minor: int | None = None
    #: The currency of expected_amount as given ("" means INR).
    expected_currency: str = ""


@dataclass(frozen=True)
class ActivePlanView:
    id: int
    user_id: int
    plan_id: int
    plan_name: str
    phone_number: str
    valid_from: datetime
    valid_to: datetime
    status: str

    @classmethod
    def of(cls, row: Any) -> ActivePlanView:
        """From a ``currentactiveplans`` row joined with its plan's name."""
        return cls(
            row.id,
            row.user_id,
            row.plan_id,
            row.plan_name,
            row.phone_number,
            row.valid_from,
            row.valid_to,
            row.status,
        )


@dataclass(frozen=True)
class RechargeResult:
    txn: Transaction
    active_plan: ActivePlanView | None
    discount: Decimal
    cashback: Decimal
    cashback_txn: Transaction | None = None
    pending: ChargeResult | None = None
    #: Extra allowances the offer added to the plan (PlanBenefits-shaped JSON).
    bonus: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ExternalRecharge:
    """An externally paid recharge, priced and checked, before its key is claimed."""

    caller: str
    order: Order
    fingerprint: str
    payer: Payer
    phone: str
    pricing: Pricing

    @property
    def gateway_reference(self) -> str:
        """Our reference for the charge: stable across retries of the same request."""
        return f"{self.caller}/{self.order.request_id}"


@dataclass(frozen=True)
class Purchase:
    """What a recharge writes: a priced plan for one payer and number (the prices and
    the plan's terms as they were when it was priced)."""

    user_id: int
    payer_phone: str | None
    phone: str
    plan_id: int
    plan_name: str
    plan_type: str
    validity_days: int
    offer_id: int | None
    #: What the payer pays (the plan's price less the discount).
    amount: Decimal
    discount: Decimal
    cashback: Decimal
    #: Extra allowances of the offer (PlanBenefits-shaped JSON); None if none.
    bonus: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, payer: Payer, phone: str, pricing: Pricing) -> Purchase:
        return cls(
            user_id=payer.user_id,
            payer_phone=payer.phone,
            phone=phone,
            plan_id=pricing.plan.plan_id,
            plan_name=pricing.plan.plan_name,
            plan_type=pricing.plan.plan_type,
            validity_days=pricing.plan.validity_days,
            offer_id=pricing.offer.offer_id if pricing.offer else None,
            amount=pricing.to_pay,
            discount=pricing.discount,
            cashback=pricing.cashback,
            bonus=pricing.bonus,
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("amount", "discount", "cashback"):
            out[name] = str(out[name])
        return out

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Purchase:
        fields = dict(value)
        for name in ("amount", "discount", "cashback"):
            fields[name] = Decimal(str(fields[name]))
        return cls(**fields)


@dataclass(frozen=True)
class PaidRecharge:
    """An externally paid recharge's charge and what recording it needs, without the
    request: the payment attempt's ``intent`` (server/payments/attempts), from which the
    recovery job records it exactly as the live call would."""

    charge: attempts.Charge
    purchase: Purchase
    method: str
    source: str

    @classmethod
    def of(cls, ext: ExternalRecharge, *, source: str = "recharge") -> PaidRecharge:
        """The intent of a checked, priced order, in the call's scope."""
        purchase = Purchase.of(ext.payer, ext.phone, ext.pricing)
        method = ext.order.payment_method
        return cls(
            attempts.Charge(
                reference=ext.gateway_reference,
                kind=attempts.RECHARGE,
                caller=ext.caller,
                request_id=ext.order.request_id,
                rpc=current_rpc(),
                fingerprint=ext.fingerprint,
                user_id=ext.payer.user_id,
                intent={"purchase": purchase.to_json(), "method": method, "source": source},
            ),
            purchase,
            method,
            source,
        )

    @classmethod
    def of_attempt(cls, attempt: attempts.Attempt) -> PaidRecharge:
        intent = attempt.charge.intent
        return cls(
            attempt.charge,
            Purchase.from_json(intent["purchase"]),
            str(intent["method"]),
            str(intent.get("source", "recharge")),
        )


@dataclass(frozen=True)
class PlanCounts:
    """What one plan-expiry tick did."""

    ran: bool
    expired: int = 0
    activated: int = 0
    notified: int = 0


def _now() -> datetime:
    return datetime.now(UTC)


def valid_phone(value: str, field: str = "phone_number") -> str:
    phone = normalize_phone(value)
    if phone is None:
        raise InvalidArgument.field(field, "must be a 10-digit Indian mobile number")
    return phone


_CENT = Decimal("0.01")
ACCOUNT_BLOCKED = "ACCOUNT_BLOCKED"
INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"


def unknown_user(user_id: int) -> NotFound:
    return NotFound(f"user {user_id} not found", metadata={"user_id": str(user_id)})


def blocked_payer() -> PermissionDenied:
    return PermissionDenied("the paying account is blocked", reason=ACCOUNT_BLOCKED)


def _payer_of(row: Any, user_id: int, *, blocked_ok: bool = False) -> Payer:
    """The payer of a ``buyer``-shaped row: NOT_FOUND for an unknown user; a blocked
    account is PERMISSION_DENIED ``ACCOUNT_BLOCKED`` unless ``blocked_ok`` (a quote
    reports it as a reason instead)."""
    if row is None or row.user_id is None:
        raise unknown_user(user_id)
    active = row.status == "active"
    if not active and not blocked_ok:
        raise blocked_payer()
    return Payer(
        row.user_id,
        row.user_type,
        row.phone_number,
        not row.has_recharged,
        active=active,
        balance=getattr(row, "wallet_balance", None),
    )


def payer_id(who: Principal, requested: int) -> int:
    """Users pay for themselves; services name the customer; admins cannot recharge."""
    if who.kind == "user":
        if requested not in (0, who.numeric_id):
            raise PermissionDenied("you can only pay from your own wallet", reason="NOT_OWNER")
        return who.numeric_id
    if who.kind == "service":
        if requested <= 0:
            raise InvalidArgument.field("user_id", "a service must name the paying customer")
        return requested
    raise PermissionDenied("only customers and services can recharge", reason="NO_WALLET")


# --- pricing ------------------------------------------------------------------------------


async def price(catalogue: Catalogue, payer: Payer, plan_id: int, offer_id: int | None) -> Pricing:
    violations: list[FieldViolation] = []
    if plan_id <= 0:
        violations.append(FieldViolation("plan_id", "must be a positive id"))
    if offer_id is not None and offer_id <= 0:
        violations.append(FieldViolation("offer_id", "must be a positive id"))
    if violations:
        raise InvalidArgument.of(violations)
    plan = await catalogue.plan(plan_id)
    if plan is None:
        raise NotFound(f"plan {plan_id} not found", metadata={"plan_id": str(plan_id)})
    buyer = Buyer(payer.user_id, payer.user_type, payer.first_recharge)
    reasons = list(plan_reasons(plan, buyer))
    offer = None
    discount = cashback = Decimal("0.00")
    bonus: Mapping[str, Any] | None = None
    if offer_id is not None:
        offer = await catalogue.offer(offer_id)
        if offer is None:
            raise NotFound(f"offer {offer_id} not found", metadata={"offer_id": str(offer_id)})
        outcome = evaluate(offer, plan, buyer, _now())
        reasons.extend(outcome.reasons)
        if outcome.eligible:
            discount, cashback = outcome.discount, outcome.cashback
            bonus = dict(outcome.bonus) if outcome.bonus else None
    if not reasons and plan.price - discount <= 0:
        # Every recharge is a ledger debit, and a debit moves some money: a plan (or an
        # offer's discount) that makes the order free is refused, at the quote already.
        reasons.append(
            (NOTHING_TO_PAY, "this order would cost nothing; free recharges are not sold")
        )
    return Pricing(plan, offer, tuple(reasons), plan.price, discount, cashback, bonus)


async def _payer(user_id: int, *, conn: AsyncConnection) -> Payer:
    return _payer_of(await queries.buyer(conn, user_id), user_id)


async def quote(
    catalogue: Catalogue,
    who: Principal,
    *,
    phone_number: str,
    plan_id: int,
    offer_id: int | None,
    payment_method: str,
    user_id: int,
    conn: AsyncConnection,
) -> QuoteResult:
    """What Recharge with the same inputs would do now, without doing it. Whatever would
    make it refuse the order for the buyer's state (the plan's and offer's rules, a
    blocked account, a wallet that cannot pay) is a reason, not an error."""
    if payment_method not in (WALLET, *EXTERNAL_METHODS):
        raise InvalidArgument.field("payment_method", "must be WALLET, UPI, CARD or NET_BANKING")
    paying = payer_id(who, user_id)
    payer = _payer_of(await queries.buyer(conn, paying), paying, blocked_ok=True)
    phone = valid_phone(phone_number) if phone_number else payer.phone
    if phone is None:
        raise InvalidArgument.field("phone_number", "is required (no number on file)")
    until = await queries.queue_end(conn, phone)
    pricing = await price(catalogue, payer, plan_id, offer_id)
    reasons: list[tuple[str, str]] = []
    if not payer.active:
        reasons.append((ACCOUNT_BLOCKED, "the paying account is blocked"))
    if payment_method == WALLET and payer.balance is not None and payer.balance < pricing.to_pay:
        reasons.append(
            (
                INSUFFICIENT_FUNDS,
                f"the wallet holds {payer.balance}, the recharge costs {pricing.to_pay}",
            )
        )
    if reasons:
        pricing = dataclasses.replace(pricing, reasons=(*pricing.reasons, *reasons))
    now = _now()
    starts = max(now, until) if until else now
    return QuoteResult(
        pricing,
        starts_at=starts,
        ends_at=starts + timedelta(days=pricing.plan.validity_days),
        queued=until is not None and until > now,
    )


# --- execution ----------------------------------------------------------------------------


def check_order(order: Order) -> None:
    violations: list[FieldViolation] = []
    try:
        idempotency.validate_request_id(order.request_id)
    except InvalidArgument as exc:
        violations.extend(exc.violations)
    if order.payment_method not in (WALLET, *EXTERNAL_METHODS):
        violations.append(
            FieldViolation("payment_method", "must be WALLET, UPI, CARD or NET_BANKING")
        )
    if order.expected_amount_minor is not None and order.expected_amount_minor < 0:
        violations.append(FieldViolation("expected_amount", "must not be negative"))
    if order.expected_currency not in ("", CURRENCY):
        violations.append(
            FieldViolation("expected_amount.currency_code", f"only {CURRENCY} is accepted")
        )
    if violations:
        raise InvalidArgument.of(violations)


def check_price(order: Order, pricing: Pricing) -> None:
    if not pricing.eligible:
        code, message = pricing.reasons[0]
        raise FailedPrecondition(
            message, reason=code, metadata={"reasons": ",".join(c for c, _ in pricing.reasons)}
        )
    if order.expected_amount_minor is not None and order.expected_amount_minor != to_minor(
        pricing.to_pay
    ):
        raise FailedPrecondition(
            "the price changed since the quote; quote again",
            reason="PRICE_CHANGED",
            metadata={"amount_to_pay_minor": str(to_minor(pricing.to_pay))},
        )


async def replayed(
    *, caller: str, request_id: str, rpc: str, fingerprint: str, conn: AsyncConnection
) -> RechargeResult | None:
    """The response of the earlier call with this key (ALREADY_EXISTS for another
    request, FAILED_PRECONDITION ``IN_PROGRESS`` while it runs); None when the key is
    gone (expired and purged since). ``conn``'s transaction must be rolled back: the
    key is claimed when it is gone."""
    replay = await idempotency.claim(
        conn, caller=caller, request_id=request_id, rpc=rpc, fingerprint=fingerprint
    )
    if replay is None:
        return None
    return await result_of(replay.result, conn=conn)


async def _write(
    *,
    caller: str,
    request_id: str,
    purchase: Purchase,
    category: str,
    source: str,
    method: str,
    payment_id: str | None,
    reward_amount: Decimal,
    conn: AsyncConnection,
) -> RechargeResult:
    """Everything a recharge writes, in one statement (``gencharge_record_recharge``,
    migration 0019): the ledger row, the plan, the cashback, what the recharge showed
    (``recharges``), the referral reward, the key's result and the audit event."""
    p = purchase
    row = await queries.record_recharge(
        conn,
        caller=caller,
        request_id=request_id,
        user_id=p.user_id,
        plan_id=p.plan_id,
        offer_id=p.offer_id,
        validity_days=p.validity_days,
        amount=p.amount,
        discount=p.discount,
        cashback=p.cashback,
        bonus=p.bonus,
        service_type=p.plan_type,
        phone=p.phone,
        from_phone=p.payer_phone,
        category=category,
        source=source,
        payment_method=method,
        payment_transaction_id=payment_id,
        reward_amount=reward_amount,
        audit_event=take_event(
            "Transactions",
            "INSERT",
            {
                "user_id": p.user_id,
                "plan_id": p.plan_id,
                "offer_id": p.offer_id,
                "amount": str(p.amount),
                "phone_number": p.phone,
                "payment_method": method,
            },
        ),
    )
    return recorded_result(
        p,
        dict(row._mapping),
        category=category,
        source=source,
        method=method,
        payment_id=payment_id,
    )


def recorded_result(
    p: Purchase,
    row: Mapping[str, Any],
    *,
    category: str,
    source: str,
    method: str,
    payment_id: str | None = None,
) -> RechargeResult:
    """The response of a recharge the function recorded: the order's values and what
    the database drew (ids, times, balances, the plan period)."""
    txn = Transaction(
        txn_id=int(row["txn_id"]),
        user_id=p.user_id,
        category=category,
        txn_type="debit",
        amount=p.amount.quantize(_CENT),
        currency=CURRENCY,
        service_type=p.plan_type,
        plan_id=p.plan_id,
        offer_id=p.offer_id,
        from_phone_number=p.payer_phone,
        to_phone_number=p.phone,
        source=source,
        status="success",
        payment_method=method,
        payment_transaction_id=payment_id,
        created_at=row["created_at"],
        balance_after=row["balance_after"],
    )
    cashback = None
    if row["cashback_txn_id"] is not None:
        cashback = dataclasses.replace(
            txn,
            txn_id=int(row["cashback_txn_id"]),
            category="wallet",
            txn_type="credit",
            amount=p.cashback.quantize(_CENT),
            service_type=None,
            from_phone_number=None,
            to_phone_number=None,
            source="cashback",
            payment_method=WALLET,
            payment_transaction_id=None,
            created_at=row["cashback_created_at"],
            balance_after=row["cashback_balance_after"],
        )
    plan = ActivePlanView(
        int(row["cap_id"]),
        p.user_id,
        p.plan_id,
        p.plan_name,
        p.phone,
        row["valid_from"],
        row["valid_to"],
        row["cap_status"],
    )
    return RechargeResult(txn, plan, p.discount, p.cashback, cashback, bonus=p.bonus)


async def prepare_external(
    catalogue: Catalogue,
    who: Principal,
    order: Order,
    fingerprint: str,
    *,
    scope: str | None,
    conn: AsyncConnection,
) -> ExternalRecharge:
    """Check and price an externally paid order (a read; nothing is claimed yet)."""
    check_order(order)
    payer = await _payer(payer_id(who, order.user_id), conn=conn)
    phone = valid_phone(order.phone_number) if order.phone_number else payer.phone
    if phone is None:
        raise InvalidArgument.field("phone_number", "is required (no number on file)")
    pricing = await price(catalogue, payer, order.plan_id, order.offer_id)
    check_price(order, pricing)
    return ExternalRecharge(scope or who.subject, order, fingerprint, payer, phone, pricing)


async def claim_external(intent: PaidRecharge, *, conn: AsyncConnection) -> RechargeResult | None:
    """Claim the key "in progress" and write the payment attempt ``charging`` (their own
    transaction, committed before the gateway is called); the original result when this
    request already ran."""
    charge = intent.charge
    replay = await idempotency.claim_for_external_call(
        conn,
        caller=charge.caller,
        request_id=charge.request_id,
        rpc=charge.rpc,
        fingerprint=charge.fingerprint,
    )
    if replay is not None:
        return await result_of(replay.result, conn=conn)
    done = await attempts.begin(charge, conn=conn)
    if done is None:
        return None
    # Recorded long ago (its key expired since): the same outcome.
    result = {"txn_id": done.txn_id}
    await idempotency.complete(
        conn, caller=charge.caller, request_id=charge.request_id, result=result
    )
    return await result_of(result, conn=conn)


async def record_external(
    intent: PaidRecharge,
    charge: ChargeResult,
    *,
    reward_amount: Decimal,
    conn: AsyncConnection,
) -> RechargeResult:
    """After the gateway authorised the charge or left it pending, in one transaction:
    the ledger row (and, authorised, the plan and what comes with it), the completed
    key and the attempt ``recorded``. The attempt is locked first: a charge already
    recorded is replayed, never recorded twice. The recovery job records through here
    too."""
    attempt = await attempts.lock(intent.charge.reference, conn=conn)
    if attempt is not None and attempt.state == attempts.RECORDED:
        return await recorded_recharge(attempt, conn=conn)
    await attempts.reclaim_key(intent.charge, conn=conn)
    p = intent.purchase
    key = {"caller": intent.charge.caller, "request_id": intent.charge.request_id}
    if charge.status == "pending":
        txn = await ledger.insert(
            {
                "user_id": p.user_id,
                "category": "service",
                "txn_type": "debit",
                "amount": p.amount,
                "service_type": p.plan_type,
                "plan_id": p.plan_id,
                "offer_id": p.offer_id,
                "from_phone_number": p.payer_phone,
                "to_phone_number": p.phone,
                "source": intent.source,
                "status": "pending",
                "payment_method": intent.method,
                "payment_transaction_id": charge.payment_id,
            },
            conn=conn,
        )
        audit_change("Transactions", "INSERT", {"txn_id": txn.txn_id, "pending": True})
        await queries.record_pending_recharge(
            conn, txn_id=txn.txn_id, discount=p.discount, cashback=p.cashback, bonus=p.bonus
        )
        await idempotency.complete(
            conn,
            **key,
            result={"txn_id": txn.txn_id},
        )
        result = RechargeResult(txn, None, p.discount, p.cashback, pending=charge, bonus=p.bonus)
    else:
        await queries.lock_phone(conn, p.phone)
        result = await _write(
            **key,
            purchase=p,
            category="service",
            source=intent.source,
            method=intent.method,
            payment_id=charge.payment_id,
            reward_amount=reward_amount,
            conn=conn,
        )
    await attempts.recorded(
        attempt, intent.charge, payment_id=charge.payment_id, txn_id=result.txn.txn_id, conn=conn
    )
    return result


async def recorded_recharge(attempt: attempts.Attempt, *, conn: AsyncConnection) -> RechargeResult:
    """The outcome of a recharge whose attempt is recorded (its key's result)."""
    stored = await idempotency.stored_result(
        conn, caller=attempt.charge.caller, request_id=attempt.charge.request_id
    )
    return await result_of(stored if stored is not None else {"txn_id": attempt.txn_id}, conn=conn)


# --- reads --------------------------------------------------------------------------------


async def _results(txns: Sequence[Transaction], *, conn: AsyncConnection) -> list[RechargeResult]:
    """These recharge debits as the Recharge response showed them: the plan period,
    discount, cashback, cashback credit and bonus recorded with each (``recharges``). A
    failed recharge shows no cashback and no bonus (neither will be given)."""
    details = {r.txn_id: r for r in await queries.recharge_details(conn, [t.txn_id for t in txns])}
    cashback_ids = [int(r.cashback_txn_id) for r in details.values() if r.cashback_txn_id]
    credits = {t.txn_id: t for t in await ledger.get_many(cashback_ids, conn=conn)}
    results: list[RechargeResult] = []
    for txn in txns:
        row = details.get(txn.txn_id)
        if row is None:  # not a recharge this service recorded: its ledger row only
            results.append(RechargeResult(txn, None, Decimal("0.00"), Decimal("0.00")))
            continue
        plan = None
        if row.cap_id is not None:
            plan = ActivePlanView(
                row.cap_id,
                row.cap_user_id,
                row.cap_plan_id,
                row.cap_plan_name,
                row.cap_phone_number,
                row.cap_valid_from,
                row.cap_valid_to,
                row.cap_status,
            )
        failed = txn.status == "failed"
        cashback = Decimal("0.00") if failed else row.cashback
        credit = credits.get(int(row.cashback_txn_id)) if row.cashback_txn_id else None
        bonus = None if failed else row.bonus
        results.append(RechargeResult(txn, plan, row.discount, cashback, credit, bonus=bonus))
    return results


async def get(who: Principal, txn_id: int, *, conn: AsyncConnection) -> RechargeResult:
    if txn_id <= 0:
        raise InvalidArgument.field("txn_id", "must be a positive id")
    txn = await ledger.get(txn_id, conn=conn)
    if (
        txn is None
        or txn.source not in ledger.RECHARGE_SOURCES
        or txn.txn_type != "debit"
        or (who.kind == "user" and txn.user_id != who.numeric_id)
        or who.kind not in ("user", "service")
    ):
        raise NotFound(f"recharge {txn_id} not found")
    return (await _results([txn], conn=conn))[0]


async def list_recharges(
    who: Principal,
    *,
    phone_number: str,
    status: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    page_size: int,
    page_token: str,
    conn: AsyncConnection,
) -> tuple[list[RechargeResult], str]:
    user_id = customer_id(who, "recharges to list")
    phone = valid_phone(phone_number) if phone_number else None
    page = pagination.parse(
        page_size,
        page_token,
        {"recharges": [phone, status, str(created_after), str(created_before), user_id]},
    )
    rows = await ledger.list_transactions(
        user_id=user_id,
        txn_type="debit",
        sources=sorted(ledger.RECHARGE_SOURCES),
        status=status,
        to_phone=phone,
        created_after=created_after,
        created_before=created_before,
        after=pagination.time_keyset(page.after),
        limit=page.fetch,
        conn=conn,
    )
    txns, token = pagination.time_page(rows, page, "created_at", "txn_id")
    return await _results(txns, conn=conn), token


#: ListActivePlans without a status: what covers the numbers now or later.
CURRENT_STATUSES = ("active", "queued")


async def active_plans(
    who: Principal,
    *,
    phone_number: str,
    status: str | None,
    page_size: int,
    page_token: str,
    conn: AsyncConnection,
) -> tuple[list[ActivePlanView], str]:
    """The caller's plans of ``status`` (None: active and queued), by valid_from."""
    user_id = customer_id(who, "recharges to list")
    phone = valid_phone(phone_number) if phone_number else None
    page = pagination.parse(page_size, page_token, {"active_plans": [phone, status, user_id]})
    rows = await queries.list_active_plans(
        conn,
        user_id=user_id,
        phone=phone,
        statuses=[status] if status is not None else CURRENT_STATUSES,
        after=pagination.time_keyset(page.after),
        limit=page.fetch,
    )
    items, token = pagination.time_page(rows, page, "valid_from", "id")
    return [ActivePlanView.of(r) for r in items], token


async def result_of(result: Mapping[str, Any], *, conn: AsyncConnection) -> RechargeResult:
    """The response of an earlier recharge, from its idempotency key's result."""
    txn = await ledger.get(int(result["txn_id"]), conn=conn)
    assert txn is not None
    return (await _results([txn], conn=conn))[0]


async def _settle_extras(
    *,
    user_id: int,
    plan_id: int,
    offer_id: int | None,
    cashback: Decimal,
    reward: ledger.EarnedReward | None,
    reward_amount: Decimal,
    conn: AsyncConnection,
) -> Transaction | None:
    """Cashback to the buyer, and a referral reward to the referrer once earned."""
    cashback_txn = None
    if cashback > 0:
        cashback_txn = await ledger.credit_cashback(
            user_id=user_id, amount=cashback, plan_id=plan_id, offer_id=offer_id, conn=conn
        )
    if reward is not None:
        await ledger.pay_referral_reward(reward, reward_amount, conn=conn)
    return cashback_txn


async def activate_paid_recharge(
    txn: Transaction, *, reward_amount: Decimal, conn: AsyncConnection
) -> Transaction | None:
    """Finish an externally paid recharge whose payment just succeeded (ConfirmPayment):
    queue or activate its plan, credit the offer's cashback (if the offer is still
    eligible at settlement) and pay a referral reward on a first recharge. Runs in the
    caller's transaction, after the ledger row was marked success. Returns the cashback
    ledger row, if any."""
    assert txn.plan_id is not None and txn.to_phone_number is not None
    plan = await plans.get_plan(txn.plan_id, conn=conn)
    await queries.lock_phone(conn, txn.to_phone_number)
    cap = await queries.activate_plan(
        conn,
        user_id=txn.user_id,
        plan_id=txn.plan_id,
        phone=txn.to_phone_number,
        validity_days=plan.validity_days,
    )
    offer: OfferInfo | None = None
    cashback = Decimal("0.00")
    bonus: Mapping[str, Any] | None = None
    if txn.offer_id is not None:
        buyer_row = await queries.buyer(conn, txn.user_id, exclude_txn=txn.txn_id)
        if buyer_row is not None:
            offer = await plans.get_offer(txn.offer_id, conn=conn)
            outcome = evaluate(
                offer,
                plan,
                Buyer(buyer_row.user_id, buyer_row.user_type, not buyer_row.has_recharged),
                _now(),
            )
            if outcome.eligible:
                cashback = outcome.cashback
                bonus = dict(outcome.bonus) if outcome.bonus else None
    reward = await ledger.reward_first_recharge(txn, reward_amount, conn=conn)
    cashback_txn = await _settle_extras(
        user_id=txn.user_id,
        plan_id=plan.plan_id,
        offer_id=offer.offer_id if offer else None,
        cashback=cashback,
        reward=reward,
        reward_amount=reward_amount,
        conn=conn,
    )
    await queries.record_settled_recharge(
        conn,
        txn_id=txn.txn_id,
        active_plan_id=cap.id,
        cashback=cashback,
        cashback_txn_id=cashback_txn.txn_id if cashback_txn else None,
        bonus=bonus,
    )
    return cashback_txn


# --- the plan queue over time (the scheduler's plan-expiry job) -----------------------------


async def expire_and_activate_plans(*, conn: AsyncConnection) -> PlanCounts:
    """Mark plans whose valid_to passed expired, activate queued plans whose valid_from
    came, and tell users whose number is left without a plan (``plan_expiry``)."""
    expired = await queries.expire_plans(conn)
    activated = await queries.activate_queued_plans(conn)
    if expired or activated:
        audit_change(
            "CurrentActivePlans",
            "UPDATE",
            {
                "expired": listed(sorted(r.id for r in expired)),
                "activated": listed(activated),
            },
        )
    phones = sorted({r.phone_number for r in expired if r.old_status == "active"})
    uncovered = await queries.uncovered_phones(conn, phones) if phones else set()
    notified = 0
    for row in expired:
        if row.old_status == "active" and row.phone_number in uncovered:
            await notify(
                conn,
                user_id=row.user_id,
                type_name="plan_expiry",
                description=f"Your plan {row.plan_name} on {row.phone_number} has expired.",
                attachments=[{"kind": "active_plan", "active_plan_id": row.id}],
            )
            uncovered.discard(row.phone_number)
            notified += 1
    return PlanCounts(True, len(expired), len(activated), notified)


# --- refunds (AdminService RefundTransaction) ---------------------------------------------


async def end_plan_of_refunded(txn: Transaction, *, conn: AsyncConnection) -> int | None:
    """End the plan a fully refunded recharge bought, now: a queued plan never starts,
    an active one stops (plans queued behind it on the number keep their dates).
    Takes the number's lock, like a recharge queueing on it. Returns the plan period's
    id, or None when there was none left to end."""
    found = await queries.plan_of_recharge(conn, txn.txn_id)
    if found is None or found.status not in ("active", "queued"):
        return None
    if found.phone_number:
        await queries.lock_phone(conn, found.phone_number)
    ended = await queries.end_plan_now(conn, int(found.id))
    return int(ended.id) if ended is not None else None
