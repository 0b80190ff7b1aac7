"""Ledger values and operations (no grpc, no transactions opened here: every function
takes the connection it works on as ``conn``).

Money moves only through ledger rows: inserting a ``wallet``/``success`` row, or
settling a ``pending`` one as ``success``, makes the database trigger move the wallet,
and refuses to overdraw it (SQLSTATE GC001, FAILED_PRECONDITION ``INSUFFICIENT_FUNDS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.errors import FailedPrecondition
from server.core.money import CURRENCY, to_minor
from server.core.schema import SQLSTATE_INSUFFICIENT_BALANCE
from server.ledger import queries

#: How long an external payment may stay pending (the user finishing it at the
#: gateway); the scheduler marks older ones failed (server/wallet/domain.py).
PENDING_PAYMENT_TTL = timedelta(minutes=30)
WALLET = "Wallet"
EXTERNAL_METHODS = frozenset(queries.EXTERNAL_METHODS)
RECHARGE_SOURCES = frozenset(queries.RECHARGE_SOURCES)


@dataclass(frozen=True)
class Transaction:
    """One ``transactions`` row."""

    txn_id: int
    user_id: int
    category: str
    txn_type: str
    amount: Decimal
    currency: str
    service_type: str | None
    plan_id: int | None
    offer_id: int | None
    from_phone_number: str | None
    to_phone_number: str | None
    source: str | None
    status: str
    payment_method: str | None
    payment_transaction_id: str | None
    created_at: datetime
    balance_after: Decimal | None
    #: A refund: the transaction it refunds; a refund's reversal: the refund.
    refund_of_txn_id: int | None = None

    @classmethod
    def of(cls, row: Any) -> Transaction:
        return cls(
            txn_id=int(row.txn_id),
            user_id=int(row.user_id),
            category=row.category,
            txn_type=row.txn_type,
            amount=row.amount,
            currency=(row.currency or CURRENCY).strip(),
            service_type=row.service_type,
            plan_id=row.plan_id,
            offer_id=row.offer_id,
            from_phone_number=row.from_phone_number,
            to_phone_number=row.to_phone_number,
            source=row.source,
            status=row.status,
            payment_method=row.payment_method,
            payment_transaction_id=row.payment_transaction_id,
            created_at=row.created_at,
            balance_after=row.balance_after,
            refund_of_txn_id=getattr(row, "refund_of_txn_id", None),
        )

    @property
    def is_external(self) -> bool:
        return self.payment_method in EXTERNAL_METHODS

    @property
    def is_paid_recharge(self) -> bool:
        """A plan bought by an external payment (ConfirmPayment activates it)."""
        return (
            self.category == "service"
            and self.source in RECHARGE_SOURCES
            and self.plan_id is not None
        )

    @property
    def pending_until(self) -> datetime:
        """When a pending external payment of this row expires."""
        return self.created_at + PENDING_PAYMENT_TTL

    def audit_details(self, **extra: Any) -> dict[str, Any]:
        details: dict[str, Any] = {
            "txn_id": self.txn_id,
            "user_id": self.user_id,
            "category": self.category,
            "txn_type": self.txn_type,
            "source": self.source,
            "status": self.status,
            "amount_minor": to_minor(self.amount),
            "currency": self.currency,
            "payment_method": self.payment_method,
            "payment_transaction_id": self.payment_transaction_id,
        }
        if self.balance_after is not None:
            details["balance_after_minor"] = to_minor(self.balance_after)
        details.update(extra)
        return details


@dataclass(frozen=True)
class ReferralReward:
    """One ``referralrewards`` row."""

    reward_id: int
    referrer_id: int
    referred_id: int
    reward_amount: Decimal
    status: str
    created_at: datetime

    @classmethod
    def of(cls, row: Any) -> ReferralReward:
        return cls(
            int(row.reward_id),
            int(row.referrer_id),
            int(row.referred_id),
            row.reward_amount,
            row.status,
            row.created_at,
        )


@dataclass(frozen=True)
class EarnedReward:
    """A reward just recorded for a referred user's first recharge."""

    reward_id: int
    referrer_id: int
    status: str


def insufficient_funds(exc: DBAPIError, to_pay: Decimal | None = None) -> FailedPrecondition | None:
    """The domain error for the wallet trigger's refusal to overdraw, else None."""
    if getattr(exc.orig, "sqlstate", None) != SQLSTATE_INSUFFICIENT_BALANCE:
        return None
    return insufficient_funds_error(to_pay)


def insufficient_funds_error(to_pay: Decimal | None = None) -> FailedPrecondition:
    """FAILED_PRECONDITION ``INSUFFICIENT_FUNDS`` (with what the order costs)."""
    metadata = {"amount_to_pay_minor": str(to_minor(to_pay))} if to_pay is not None else {}
    return FailedPrecondition(
        "insufficient wallet balance", reason="INSUFFICIENT_FUNDS", metadata=metadata
    )


async def insert(values: Mapping[str, Any], *, conn: AsyncConnection) -> Transaction:
    """A new ledger row (the trigger moves the wallet for ``wallet``/``success`` rows)."""
    return Transaction.of(await queries.insert_transaction(conn, values))


async def get(
    txn_id: int, *, conn: AsyncConnection, user_id: int | None = None, for_update: bool = False
) -> Transaction | None:
    row = await queries.get_transaction(conn, txn_id, user_id=user_id, for_update=for_update)
    return Transaction.of(row) if row is not None else None


async def get_many(txn_ids: Sequence[int], *, conn: AsyncConnection) -> list[Transaction]:
    """The rows with these ids (those that exist), in id order."""
    if not txn_ids:
        return []
    return [Transaction.of(r) for r in await queries.get_transactions(conn, txn_ids)]


async def get_by_payment_id(
    payment_transaction_id: str, *, conn: AsyncConnection, for_update: bool = False
) -> Transaction | None:
    row = await queries.get_transaction_by_payment_id(
        conn, payment_transaction_id, for_update=for_update
    )
    return Transaction.of(row) if row is not None else None


async def status_of(txn_id: int, *, conn: AsyncConnection) -> str | None:
    return await queries.transaction_status(conn, txn_id)


async def settle(
    txn: Transaction, *, outcome: str, payment_transaction_id: str | None, conn: AsyncConnection
) -> Transaction:
    """Move a pending row to ``outcome`` ("success" or "failed"); a success of a wallet
    row credits the wallet. ``payment_transaction_id`` is recorded when the row had none."""
    try:
        row = await queries.settle_transaction(
            conn, txn.txn_id, status=outcome, payment_transaction_id=payment_transaction_id
        )
    except IntegrityError as exc:
        raise FailedPrecondition(
            "payment_transaction_id already belongs to another transaction",
            reason="PAYMENT_ID_MISMATCH",
        ) from exc
    except DBAPIError as exc:
        refused = insufficient_funds(exc)
        if refused is not None:
            raise refused from None
        raise
    return Transaction.of(row)


async def refunded(txn_id: int, *, conn: AsyncConnection) -> Decimal:
    """How much of ``txn_id`` is refunded or being refunded: its refunds that succeeded
    or are pending, less the reversals of refunds the gateway refused."""
    return await queries.refunded_amount(conn, txn_id)


async def reversal_of(refund_txn_id: int, *, conn: AsyncConnection) -> Transaction | None:
    """The reversal of a refund (the wallet credited back), if any."""
    row = await queries.reversal_of(conn, refund_txn_id)
    return Transaction.of(row) if row is not None else None


async def outstanding_refunds(
    *, created_before: datetime, exclude: Sequence[int] = (), limit: int, conn: AsyncConnection
) -> list[Transaction]:
    """Gateway refunds made before ``created_before`` whose gateway answer was never
    recorded (the refund-recovery job's work), oldest first, at most ``limit``, none of
    ``exclude``."""
    rows = await queries.outstanding_refunds(
        conn, created_before=created_before, exclude=exclude, limit=limit
    )
    return [Transaction.of(r) for r in rows]


async def record_payment_id(
    txn: Transaction, payment_transaction_id: str, *, conn: AsyncConnection
) -> Transaction:
    """Name the gateway's id of a row that has none yet (a refund the gateway made after
    its ledger row succeeded); the row's money columns stay as they are."""
    try:
        row = await queries.set_payment_transaction_id(conn, txn.txn_id, payment_transaction_id)
    except IntegrityError as exc:
        raise FailedPrecondition(
            "payment_transaction_id already belongs to another transaction",
            reason="PAYMENT_ID_MISMATCH",
        ) from exc
    return Transaction.of(row) if row is not None else txn


async def fail_stale_pending(*, created_before: datetime, conn: AsyncConnection) -> list[int]:
    """Fail external payments still pending since before ``created_before``; their ids."""
    return await queries.fail_stale_pending(conn, created_before=created_before)


async def credit_cashback(
    *,
    user_id: int,
    amount: Decimal,
    plan_id: int,
    offer_id: int | None,
    conn: AsyncConnection,
) -> Transaction:
    """The cashback of an offer, credited to the buyer's wallet."""
    return await insert(
        {
            "user_id": user_id,
            "category": "wallet",
            "txn_type": "credit",
            "amount": amount,
            "plan_id": plan_id,
            "offer_id": offer_id,
            "source": "cashback",
            "status": "success",
            "payment_method": WALLET,
        },
        conn=conn,
    )


async def pay_referral_reward(
    reward: EarnedReward, amount: Decimal, *, conn: AsyncConnection
) -> None:
    """Credit an earned reward to the referrer's wallet and mark it paid."""
    if reward.status != "earned":
        return
    await insert(
        {
            "user_id": reward.referrer_id,
            "category": "wallet",
            "txn_type": "credit",
            "amount": amount,
            "source": "referral_reward",
            "status": "success",
            "payment_method": WALLET,
        },
        conn=conn,
    )
    await queries.mark_reward_paid(conn, reward.reward_id)


async def reward_first_recharge(
    txn: Transaction, amount: Decimal, *, conn: AsyncConnection
) -> EarnedReward | None:
    """Record the referrer's reward when ``txn`` is its buyer's first successful
    recharge (one reward per referred user)."""
    row = await queries.referral_reward_on_first_recharge(
        conn, user_id=txn.user_id, txn_id=txn.txn_id, reward_amount=amount
    )
    if row is None:
        return None
    return EarnedReward(int(row.reward_id), int(row.referrer_id), row.status)


async def list_transactions(
    *,
    user_id: int,
    category: str | None = None,
    txn_type: str | None = None,
    sources: Sequence[str] | None = None,
    status: str | None = None,
    to_phone: str | None = None,
    created_after: datetime | None,
    created_before: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
    conn: AsyncConnection,
) -> list[Transaction]:
    rows = await queries.list_transactions(
        conn,
        user_id=user_id,
        category=category,
        txn_type=txn_type,
        sources=sources,
        status=status,
        to_phone=to_phone,
        created_after=created_after,
        created_before=created_before,
        after=after,
        limit=limit,
    )
    return [Transaction.of(r) for r in rows]


async def list_referral_rewards(
    *,
    referrer_id: int,
    status: str | None,
    after: tuple[datetime, int] | None,
    limit: int,
    conn: AsyncConnection,
) -> list[ReferralReward]:
    rows = await queries.list_referral_rewards(
        conn, referrer_id=referrer_id, status=status, after=after, limit=limit
    )
    return [ReferralReward.of(r) for r in rows]
