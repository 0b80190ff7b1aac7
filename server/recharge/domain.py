"""Recharge rules: who pays, pricing with offers, queueing, idempotent execution.

A recharge is paid from the payer's wallet (one database transaction: the ledger debit,
the plan activation or queueing, the referral reward and the idempotency key commit
together) or by an external method through the payment gateway (the key is claimed
first, the gateway is called outside any transaction, then the ledger row and the plan
are written; a declined payment leaves nothing behind). Money never moves twice for
one request_id, and a balance never goes negative (the database trigger guarantees it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.audit.scope import audit_change, take_event
from server.auth.identifiers import normalize_phone
from server.auth.principal import Principal
from server.core import db, idempotency, pagination
from server.core.config import Settings
from server.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from server.core.money import from_minor, to_minor
from server.core.schema import SQLSTATE_INSUFFICIENT_BALANCE
from server.payments.gateway import ChargeResult, PaymentGateway
from server.plans import queries as plan_queries
from server.plans.catalogue import Catalogue, OfferInfo, PlanInfo
from server.plans.offers import Buyer, evaluate, plan_reasons
from server.recharge import queries

WALLET = "Wallet"
EXTERNAL_METHODS = ("UPI", "Card", "NetBanking")
RowT = Row[Any]


@dataclass(frozen=True)
class Payer:
    user_id: int
    user_type: str
    phone: str | None
    first_recharge: bool


@dataclass(frozen=True)
class Pricing:
    plan: PlanInfo
    offer: OfferInfo | None
    reasons: tuple[tuple[str, str], ...]
    price: Decimal
    discount: Decimal
    cashback: Decimal

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
    txn: RowT
    active_plan: ActivePlanView | None
    discount: Decimal
    cashback: Decimal
    cashback_txn: RowT | None = None
    pending: ChargeResult | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _phone(value: str, field: str = "phone_number") -> str:
    phone = normalize_phone(value)
    if phone is None:
        raise InvalidArgument.field(field, "must be a 10-digit Indian mobile number")
    return phone


def _payer_of(row: Any, user_id: int) -> Payer:
    if row is None or row.user_id is None:
        raise NotFound(f"user {user_id} not found", metadata={"user_id": str(user_id)})
    if row.status != "active":
        raise FailedPrecondition("the paying account is blocked", reason="ACCOUNT_BLOCKED")
    return Payer(row.user_id, row.user_type, row.phone_number, not row.has_recharged)


def _first_recharge_priced(pricing: Pricing) -> bool:
    """Whether the plan or the offer is limited to a buyer's first recharge."""
    criteria = [pricing.plan.criteria, pricing.offer.criteria if pricing.offer else {}]
    return any(c.get("first_recharge_only") for c in criteria)


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


class Recharges:
    def __init__(
        self,
        engine: AsyncEngine,
        catalogue: Catalogue,
        gateway: PaymentGateway,
        settings: Settings,
    ) -> None:
        self._engine = engine
        self._catalogue = catalogue
        self._gateway = gateway
        self._reward = from_minor(settings.referral_reward_minor)

    # --- pricing ------------------------------------------------------------------------

    async def _payer(self, conn: AsyncConnection, user_id: int) -> Payer:
        return _payer_of(await queries.buyer(conn, user_id), user_id)

    async def price(self, payer: Payer, plan_id: int, offer_id: int | None) -> Pricing:
        violations: list[FieldViolation] = []
        if plan_id <= 0:
            violations.append(FieldViolation("plan_id", "must be a positive id"))
        if offer_id is not None and offer_id <= 0:
            violations.append(FieldViolation("offer_id", "must be a positive id"))
        if violations:
            raise InvalidArgument.of(violations)
        plan = await self._catalogue.plan(plan_id)
        if plan is None:
            raise NotFound(f"plan {plan_id} not found", metadata={"plan_id": str(plan_id)})
        buyer = Buyer(payer.user_id, payer.user_type, payer.first_recharge)
        reasons = list(plan_reasons(plan, buyer))
        offer = None
        discount = cashback = Decimal("0.00")
        if offer_id is not None:
            offer = await self._catalogue.offer(offer_id)
            if offer is None:
                raise NotFound(f"offer {offer_id} not found", metadata={"offer_id": str(offer_id)})
            outcome = evaluate(offer, plan, buyer, _now())
            reasons.extend(outcome.reasons)
            if outcome.eligible:
                discount, cashback = outcome.discount, outcome.cashback
        return Pricing(plan, offer, tuple(reasons), plan.price, discount, cashback)

    async def quote(
        self,
        who: Principal,
        *,
        phone_number: str,
        plan_id: int,
        offer_id: int | None,
        user_id: int,
    ) -> QuoteResult:
        payer_user = payer_id(who, user_id)
        async with db.read_only(self._engine) as conn:
            payer = await self._payer(conn, payer_user)
            phone = _phone(phone_number) if phone_number else payer.phone
            if phone is None:
                raise InvalidArgument.field("phone_number", "is required (no number on file)")
            until = await queries.queue_end(conn, phone)
        pricing = await self.price(payer, plan_id, offer_id)
        now = _now()
        starts = max(now, until) if until else now
        return QuoteResult(
            pricing,
            starts_at=starts,
            ends_at=starts + timedelta(days=pricing.plan.validity_days),
            queued=until is not None and until > now,
        )

    # --- execution ----------------------------------------------------------------------

    def _check_order(self, order: Order) -> None:
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
        if violations:
            raise InvalidArgument.of(violations)

    def _check_price(self, order: Order, pricing: Pricing) -> None:
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

    async def recharge(
        self,
        who: Principal,
        order: Order,
        fingerprint: str,
        *,
        rpc: str,
        source: str = "recharge",
        scope: str | None = None,
    ) -> RechargeResult:
        """Execute ``order`` once per (scope, request_id); ``scope`` defaults to the
        caller's subject (the idempotency keys of different callers never collide)."""
        self._check_order(order)
        payer_user = payer_id(who, order.user_id)
        caller = scope or who.subject
        if order.payment_method == WALLET:
            # The hot path: the statement that claims the key also locks the number (the
            # payer's own when none is given) and reads the payer.
            phone = _phone(order.phone_number) if order.phone_number else None
            return await self._from_wallet(
                caller, order, fingerprint, rpc, source, payer_user, phone
            )
        async with db.read_only(self._engine) as conn:
            payer = await self._payer(conn, payer_user)
        phone = _phone(order.phone_number) if order.phone_number else payer.phone
        if phone is None:
            raise InvalidArgument.field("phone_number", "is required (no number on file)")
        pricing = await self.price(payer, order.plan_id, order.offer_id)
        return await self._external(caller, order, fingerprint, rpc, payer, phone, pricing)

    async def _confirm_first_recharge(self, conn: AsyncConnection, payer: Payer) -> Payer:
        """The payer's history was read before any lock on them: two concurrent
        recharges (to different numbers) would both look like the first. When the
        price depends on it, lock the payer and read it again in a new statement (a
        snapshot taken after the lock, so it sees a first recharge just committed)."""
        await queries.lock_payer(conn, payer.user_id)
        return _payer_of(await queries.buyer(conn, payer.user_id), payer.user_id)

    async def _replay(self, conn: AsyncConnection, replay: idempotency.Replay) -> RechargeResult:
        return await _result_from_key(conn, replay.result)

    async def _from_wallet(
        self,
        caller: str,
        order: Order,
        fingerprint: str,
        rpc: str,
        source: str,
        payer_user: int,
        phone: str | None,
    ) -> RechargeResult:
        to_pay: Decimal | None = None
        try:
            async with db.transaction(self._engine) as conn:
                row = await queries.lock_claim_payer(
                    conn,
                    phone=phone,
                    caller=caller,
                    request_id=order.request_id,
                    rpc=rpc,
                    request_hash=fingerprint,
                    user_id=payer_user,
                )
                if not row.claimed:
                    replay = await idempotency.claim(
                        conn,
                        caller=caller,
                        request_id=order.request_id,
                        rpc=rpc,
                        fingerprint=fingerprint,
                    )
                    assert replay is not None
                    return await self._replay(conn, replay)
                payer = _payer_of(row, payer_user)
                phone = row.locked_phone
                if phone is None:
                    raise InvalidArgument.field("phone_number", "is required (no number on file)")
                pricing = await self.price(payer, order.plan_id, order.offer_id)
                if payer.first_recharge and _first_recharge_priced(pricing):
                    payer = await self._confirm_first_recharge(conn, payer)
                    pricing = await self.price(payer, order.plan_id, order.offer_id)
                to_pay = pricing.to_pay
                self._check_price(order, pricing)
                return await self._write(
                    conn,
                    caller=caller,
                    request_id=order.request_id,
                    payer=payer,
                    phone=phone,
                    pricing=pricing,
                    category="wallet",
                    source=source,
                    method=WALLET,
                    payment_id=None,
                )
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == SQLSTATE_INSUFFICIENT_BALANCE:
                raise FailedPrecondition(
                    "insufficient wallet balance",
                    reason="INSUFFICIENT_FUNDS",
                    metadata={"amount_to_pay_minor": str(to_minor(to_pay or Decimal(0)))},
                ) from None
            raise

    async def _write(
        self,
        conn: AsyncConnection,
        *,
        caller: str,
        request_id: str,
        payer: Payer,
        phone: str,
        pricing: Pricing,
        category: str,
        source: str,
        method: str,
        payment_id: str | None,
    ) -> RechargeResult:
        """The ledger row, the plan, the referral reward, the key and the audit event:
        one statement; offers and first recharges of referred users add one or two."""
        offer_id = pricing.offer.offer_id if pricing.offer else None
        row = await queries.insert_recharge(
            conn,
            caller=caller,
            request_id=request_id,
            user_id=payer.user_id,
            plan_id=pricing.plan.plan_id,
            offer_id=offer_id,
            validity_days=pricing.plan.validity_days,
            amount=pricing.to_pay,
            service_type=pricing.plan.plan_type,
            phone=phone,
            from_phone=payer.phone,
            category=category,
            source=source,
            payment_method=method,
            payment_transaction_id=payment_id,
            reward_amount=self._reward,
            audit_event=take_event(
                "Transactions",
                "INSERT",
                {
                    "user_id": payer.user_id,
                    "plan_id": pricing.plan.plan_id,
                    "offer_id": offer_id,
                    "amount": str(pricing.to_pay),
                    "phone_number": phone,
                    "payment_method": method,
                },
            ),
        )
        plan_view = ActivePlanView(
            row.cap_id,
            payer.user_id,
            pricing.plan.plan_id,
            pricing.plan.plan_name,
            phone,
            row.valid_from,
            row.valid_to,
            row.cap_status,
        )
        cashback_txn = await _settle_extras(
            conn,
            user_id=payer.user_id,
            pricing=pricing,
            reward_id=row.reward_id,
            reward_status=row.reward_status,
            referrer_id=row.referrer_id,
            reward_amount=self._reward,
        )
        if pricing.discount or cashback_txn is not None:
            await idempotency.complete(
                conn,
                caller=caller,
                request_id=request_id,
                result={
                    "txn_id": row.txn_id,
                    "active_plan_id": row.cap_id,
                    "discount": str(pricing.discount),
                    "cashback": str(pricing.cashback),
                    "cashback_txn_id": cashback_txn.txn_id if cashback_txn else None,
                },
            )
        return RechargeResult(row, plan_view, pricing.discount, pricing.cashback, cashback_txn)

    async def _external(
        self,
        caller: str,
        order: Order,
        fingerprint: str,
        rpc: str,
        payer: Payer,
        phone: str,
        pricing: Pricing,
    ) -> RechargeResult:
        self._check_price(order, pricing)
        async with db.transaction(self._engine) as conn:
            replay = await idempotency.claim_for_external_call(
                conn,
                caller=caller,
                request_id=order.request_id,
                rpc=rpc,
                fingerprint=fingerprint,
            )
            if replay is not None:
                return await self._replay(conn, replay)
        try:
            charge = await self._gateway.charge(
                amount=pricing.to_pay,
                currency="INR",
                method=order.payment_method,
                details=order.payment_details,
                reference=f"{caller}/{order.request_id}",
            )
        except BaseException:
            async with db.side_transaction(self._engine) as conn:
                await idempotency.release(conn, caller=caller, request_id=order.request_id)
            raise
        if charge.status == "declined":
            async with db.side_transaction(self._engine) as conn:
                await idempotency.release(conn, caller=caller, request_id=order.request_id)
            raise FailedPrecondition(
                f"the payment was declined: {charge.decline_reason or 'declined'}",
                reason="PAYMENT_DECLINED",
            )
        async with db.transaction(self._engine) as conn:
            if charge.status == "pending":
                txn = await queries.insert_ledger_row(
                    conn,
                    {
                        "user_id": payer.user_id,
                        "category": "service",
                        "txn_type": "debit",
                        "amount": pricing.to_pay,
                        "service_type": pricing.plan.plan_type,
                        "plan_id": pricing.plan.plan_id,
                        "offer_id": pricing.offer.offer_id if pricing.offer else None,
                        "from_phone_number": payer.phone,
                        "to_phone_number": phone,
                        "source": "recharge",
                        "status": "pending",
                        "payment_method": order.payment_method,
                        "payment_transaction_id": charge.payment_id,
                    },
                )
                audit_change("Transactions", "INSERT", {"txn_id": txn.txn_id, "pending": True})
                await idempotency.complete(
                    conn,
                    caller=caller,
                    request_id=order.request_id,
                    result={
                        "txn_id": txn.txn_id,
                        "discount": str(pricing.discount),
                        "cashback": str(pricing.cashback),
                    },
                )
                return RechargeResult(txn, None, pricing.discount, pricing.cashback, pending=charge)
            await queries.lock_phone(conn, phone)
            return await self._write(
                conn,
                caller=caller,
                request_id=order.request_id,
                payer=payer,
                phone=phone,
                pricing=pricing,
                category="service",
                source="recharge",
                method=order.payment_method,
                payment_id=charge.payment_id,
            )

    # --- reads --------------------------------------------------------------------------

    async def get(self, who: Principal, txn_id: int) -> RechargeResult:
        if txn_id <= 0:
            raise InvalidArgument.field("txn_id", "must be a positive id")
        async with db.read_only(self._engine) as conn:
            txn = await queries.transaction_by_id(conn, txn_id)
            if (
                txn is None
                or txn.source not in ("recharge", "autopay")
                or txn.txn_type != "debit"
                or (who.kind == "user" and txn.user_id != who.numeric_id)
                or who.kind not in ("user", "service")
            ):
                raise NotFound(f"recharge {txn_id} not found")
            cap = await queries.active_plan_for_txn(conn, txn) if txn.status == "success" else None
        return RechargeResult(
            txn, ActivePlanView.of(cap) if cap else None, Decimal("0"), Decimal("0")
        )

    async def list_recharges(
        self,
        who: Principal,
        *,
        phone_number: str,
        status: str | None,
        created_after: datetime | None,
        created_before: datetime | None,
        page_size: int,
        page_token: str,
    ) -> tuple[list[RowT], str]:
        user_id = _own_user(who)
        phone = _phone(phone_number) if phone_number else None
        page = pagination.parse(
            page_size,
            page_token,
            {"recharges": [phone, status, str(created_after), str(created_before), user_id]},
        )
        after = pagination.time_keyset(page.after)
        async with db.read_only(self._engine) as conn:
            rows = await queries.list_recharges(
                conn,
                user_id=user_id,
                phone=phone,
                status=status,
                created_after=created_after,
                created_before=created_before,
                after=after,
                limit=page.fetch,
            )
        return pagination.time_page(rows, page, "created_at", "txn_id")

    async def active_plans(
        self,
        who: Principal,
        *,
        phone_number: str,
        status: str | None,
        page_size: int,
        page_token: str,
    ) -> tuple[list[ActivePlanView], str]:
        user_id = _own_user(who)
        phone = _phone(phone_number) if phone_number else None
        page = pagination.parse(page_size, page_token, {"active": [phone, status, user_id]})
        if page.after is not None and not isinstance(page.after, int):
            raise InvalidArgument.field("page_token", "is not a token this service issued")
        async with db.read_only(self._engine) as conn:
            rows = await queries.list_active_plans(
                conn,
                user_id=user_id,
                phone=phone,
                status=status,
                after_id=page.after,
                limit=page.fetch,
            )
        items, more = pagination.split(list(rows), page)
        return [ActivePlanView.of(r) for r in items], page.next_token(
            items[-1].id if items else None, more
        )


def _own_user(who: Principal) -> int:
    if who.kind != "user":
        raise PermissionDenied("only customers have recharges to list", reason="USER_ONLY")
    return who.numeric_id


async def result_of(conn: AsyncConnection, result: Mapping[str, Any]) -> RechargeResult:
    """The response of an earlier recharge, from its idempotency key's result."""
    return await _result_from_key(conn, result)


async def _result_from_key(conn: AsyncConnection, result: Mapping[str, Any]) -> RechargeResult:
    txn = await queries.transaction_by_id(conn, int(result["txn_id"]))
    assert txn is not None
    cap_id = result.get("active_plan_id")
    cap = await queries.active_plan_by_id(conn, int(cap_id)) if cap_id else None
    cashback_id = result.get("cashback_txn_id")
    cashback_txn = await queries.transaction_by_id(conn, int(cashback_id)) if cashback_id else None
    return RechargeResult(
        txn,
        ActivePlanView.of(cap) if cap else None,
        Decimal(str(result.get("discount", "0"))),
        Decimal(str(result.get("cashback", "0"))),
        cashback_txn,
    )


async def _settle_extras(
    conn: AsyncConnection,
    *,
    user_id: int,
    pricing: Pricing,
    reward_id: int | None,
    reward_status: str | None,
    referrer_id: int | None,
    reward_amount: Decimal,
) -> RowT | None:
    """Cashback to the buyer, and a referral reward to the referrer once earned."""
    cashback_txn = None
    if pricing.cashback > 0:
        cashback_txn = await queries.insert_ledger_row(
            conn,
            {
                "user_id": user_id,
                "category": "wallet",
                "txn_type": "credit",
                "amount": pricing.cashback,
                "plan_id": pricing.plan.plan_id,
                "offer_id": pricing.offer.offer_id if pricing.offer else None,
                "source": "cashback",
                "status": "success",
                "payment_method": WALLET,
            },
        )
    if reward_id is not None and reward_status == "earned" and referrer_id is not None:
        await queries.insert_ledger_row(
            conn,
            {
                "user_id": referrer_id,
                "category": "wallet",
                "txn_type": "credit",
                "amount": reward_amount,
                "source": "referral_reward",
                "status": "success",
                "payment_method": WALLET,
            },
        )
        await queries.pay_referral_reward(conn, reward_id)
    return cashback_txn


async def activate_paid_recharge(
    conn: AsyncConnection, txn: RowT, *, reward_amount: Decimal
) -> RowT | None:
    """Finish an externally paid recharge whose payment just succeeded (ConfirmPayment):
    queue or activate its plan, credit the offer's cashback (if the offer is still
    eligible at settlement) and pay a referral reward on a first recharge. Runs in the
    caller's transaction, after the ledger row was marked success. Returns the cashback
    ledger row, if any."""
    plan_row = await plan_queries.get_plan(conn, int(txn.plan_id))
    assert plan_row is not None
    plan = PlanInfo.from_row(plan_row)
    await queries.lock_phone(conn, txn.to_phone_number)
    await queries.activate_plan(
        conn,
        user_id=txn.user_id,
        plan_id=txn.plan_id,
        phone=txn.to_phone_number,
        validity_days=plan.validity_days,
    )
    offer: OfferInfo | None = None
    cashback = Decimal("0.00")
    if txn.offer_id is not None:
        offer_row = await plan_queries.get_offer(conn, int(txn.offer_id))
        buyer_row = await queries.buyer(conn, int(txn.user_id), exclude_txn=int(txn.txn_id))
        if offer_row is not None and buyer_row is not None:
            offer = OfferInfo.from_row(offer_row)
            outcome = evaluate(
                offer,
                plan,
                Buyer(buyer_row.user_id, buyer_row.user_type, not buyer_row.has_recharged),
                _now(),
            )
            cashback = outcome.cashback if outcome.eligible else cashback
    reward = await queries.referral_reward_on_first_recharge(conn, txn, reward_amount)
    return await _settle_extras(
        conn,
        user_id=int(txn.user_id),
        pricing=Pricing(plan, offer, (), plan.price, Decimal("0.00"), cashback),
        reward_id=reward.reward_id if reward else None,
        reward_status=reward.status if reward else None,
        referrer_id=reward.referrer_id if reward else None,
        reward_amount=reward_amount,
    )
