"""SQL for recharges. The hot path is two statements in one transaction:

1. :data:`LOCK_AND_CLAIM` takes the per-number advisory lock (so the queue of plans on
   a number is computed by one recharge at a time; the number is the payer's own when
   the request names none), claims the idempotency key and reads the payer;
2. :data:`RECHARGE` (one statement of data-modifying CTEs) inserts the ledger row (the
   wallet trigger debits the wallet), queues or activates the plan, records a referral
   reward on the buyer's first recharge, completes the idempotency key and writes the
   audit event into the outbox.

The lock is taken in the first statement on purpose: under READ COMMITTED each statement
reads a snapshot taken when it starts, so the queue must be read by a statement that
starts after the lock is held.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Integer, Numeric, String

from server.core import pagination
from server.core.schema import currentactiveplans, plans, referralrewards, transactions, users

RowT = Row[Any]

LOCK_AND_CLAIM = text(
    """
    WITH target AS (
        SELECT coalesce(CAST(:phone AS text),
                        (SELECT phone_number FROM users WHERE user_id = :user_id)) AS phone
    ),
    phone_lock AS (
        SELECT pg_advisory_xact_lock(hashtextextended(target.phone, 7)) FROM target
    ),
    claim AS (
        INSERT INTO idempotency_keys (caller, request_id, rpc, request_hash, expires_at)
        SELECT :caller, :request_id, :rpc, :request_hash, now() + interval '24 hours'
        FROM phone_lock
        ON CONFLICT DO NOTHING
        RETURNING request_id
    )
    SELECT (SELECT count(*) FROM claim) = 1 AS claimed,
           (SELECT phone FROM target) AS locked_phone,
           payer.user_id, payer.user_type, payer.status, payer.phone_number,
           EXISTS (SELECT 1 FROM transactions earlier
                   WHERE earlier.user_id = payer.user_id
                     AND earlier.source IN ('recharge', 'autopay')
                     AND earlier.status IN ('success', 'pending')) AS has_recharged
    FROM (SELECT 1) AS one
    LEFT JOIN users AS payer ON payer.user_id = :user_id
    """
).bindparams(bindparam("user_id", type_=Integer), bindparam("phone", type_=String))

_TXN_COLUMNS = """txn_id, user_id, category, txn_type, amount, service_type, plan_id, offer_id,
    from_phone_number, to_phone_number, source, status, payment_method,
    payment_transaction_id, created_at, balance_after, currency"""

RECHARGE = text(
    f"""
    WITH queue AS (
        SELECT max(valid_to) AS until
        FROM currentactiveplans
        WHERE phone_number = :phone AND status IN ('active', 'queued') AND valid_to > now()
    ),
    txn AS (
        INSERT INTO transactions (user_id, category, txn_type, amount, service_type, plan_id,
            offer_id, from_phone_number, to_phone_number, source, status, payment_method,
            payment_transaction_id)
        VALUES (:user_id, CAST(:category AS txn_category_enum), 'debit', :amount,
            CAST(:service_type AS user_type_enum), :plan_id, :offer_id, :from_phone, :phone,
            CAST(:source AS txn_source_enum), 'success',
            CAST(:payment_method AS payment_method_enum), :payment_transaction_id)
        RETURNING {_TXN_COLUMNS}
    ),
    cap AS (
        INSERT INTO currentactiveplans (user_id, plan_id, phone_number, valid_from, valid_to,
            status)
        SELECT :user_id, :plan_id, :phone,
            greatest(now(), coalesce(queue.until, now())),
            greatest(now(), coalesce(queue.until, now())) + make_interval(days => :validity),
            CAST(CASE WHEN queue.until > now() THEN 'queued' ELSE 'active' END
                 AS active_plan_status_enum)
        FROM queue, txn
        RETURNING id, valid_from, valid_to, status
    ),
    reward AS (
        INSERT INTO referralrewards (referrer_id, referred_id, reward_amount)
        SELECT referrer.user_id, buyer.user_id, :reward_amount
        FROM users buyer
        JOIN users referrer ON referrer.referral_code = buyer.referred_by
        CROSS JOIN txn
        WHERE buyer.user_id = :user_id
          AND :reward_amount > 0
          AND NOT EXISTS (
              SELECT 1 FROM transactions earlier
              WHERE earlier.user_id = :user_id
                AND earlier.source IN ('recharge', 'autopay')
                AND earlier.status = 'success')
        ON CONFLICT (referred_id) DO NOTHING
        RETURNING reward_id, referrer_id, status
    ),
    idem AS (
        UPDATE idempotency_keys
           SET result = jsonb_build_object('txn_id', txn.txn_id, 'active_plan_id', cap.id)
          FROM txn, cap
         WHERE caller = :caller AND request_id = :request_id
    ),
    audit AS (
        INSERT INTO audit_outbox (event)
        SELECT jsonb_set(CAST(:audit_event AS jsonb), '{{details,txn_id}}', to_jsonb(txn.txn_id))
        FROM txn
        WHERE :audit_event IS NOT NULL
    )
    SELECT txn.*, cap.id AS cap_id, cap.valid_from, cap.valid_to, cap.status AS cap_status,
           reward.reward_id, reward.referrer_id, reward.status AS reward_status
    FROM txn CROSS JOIN cap LEFT JOIN reward ON true
    """
).bindparams(
    bindparam("amount", type_=Numeric(10, 2)),
    bindparam("reward_amount", type_=Numeric(10, 2)),
    bindparam("validity", type_=Integer),
    bindparam("user_id", type_=Integer),
    bindparam("plan_id", type_=Integer),
    bindparam("offer_id", type_=Integer),
    bindparam("audit_event", type_=String),
)


async def lock_claim_payer(
    conn: AsyncConnection,
    *,
    phone: str | None,
    caller: str,
    request_id: str,
    rpc: str,
    request_hash: str,
    user_id: int,
) -> RowT:
    """Lock the number (``phone``, or the payer's own number when None) for this
    transaction, claim the key and read the payer, in one round trip: ``claimed``,
    ``locked_phone`` (NULL when the payer has no number on file) and the payer's
    columns (NULL for an unknown user). Nothing is locked without a number; the caller
    then refuses the order and the transaction rolls back."""
    result = await conn.execute(
        LOCK_AND_CLAIM,
        {
            "phone": phone,
            "caller": caller,
            "request_id": request_id,
            "rpc": rpc,
            "request_hash": request_hash,
            "user_id": user_id,
        },
    )
    row: RowT = result.one()
    return row


async def lock_phone(conn: AsyncConnection, phone: str) -> None:
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:phone, 7))"), {"phone": phone}
    )


async def lock_payer(conn: AsyncConnection, user_id: int) -> None:
    """Serialise this payer's recharges that depend on their history (first-recharge
    pricing) until the transaction ends. Keyed apart from the number locks."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 8))"),
        {"key": f"payer:{user_id}"},
    )


async def insert_recharge(
    conn: AsyncConnection,
    *,
    caller: str,
    request_id: str,
    user_id: int,
    plan_id: int,
    offer_id: int | None,
    validity_days: int,
    amount: Decimal,
    service_type: str,
    phone: str,
    from_phone: str | None,
    category: str,
    source: str,
    payment_method: str,
    payment_transaction_id: str | None,
    reward_amount: Decimal,
    audit_event: Mapping[str, Any] | None,
) -> RowT:
    result = await conn.execute(
        RECHARGE,
        {
            "caller": caller,
            "request_id": request_id,
            "user_id": user_id,
            "plan_id": plan_id,
            "offer_id": offer_id,
            "validity": validity_days,
            "amount": amount,
            "service_type": service_type,
            "phone": phone,
            "from_phone": from_phone,
            "category": category,
            "source": source,
            "payment_method": payment_method,
            "payment_transaction_id": payment_transaction_id,
            "reward_amount": reward_amount,
            "audit_event": json.dumps(audit_event) if audit_event is not None else None,
        },
    )
    row: RowT = result.one()
    return row


async def activate_plan(
    conn: AsyncConnection, *, user_id: int, plan_id: int, phone: str, validity_days: int
) -> RowT:
    """Queue or activate a plan on ``phone`` (the caller holds the number's lock)."""
    result = await conn.execute(
        text(
            """
            WITH queue AS (
                SELECT max(valid_to) AS until FROM currentactiveplans
                WHERE phone_number = :phone AND status IN ('active', 'queued')
                  AND valid_to > now()
            )
            INSERT INTO currentactiveplans (user_id, plan_id, phone_number, valid_from,
                valid_to, status)
            SELECT :user_id, :plan_id, :phone,
                greatest(now(), coalesce(queue.until, now())),
                greatest(now(), coalesce(queue.until, now())) + make_interval(days => :validity),
                CAST(CASE WHEN queue.until > now() THEN 'queued' ELSE 'active' END
                     AS active_plan_status_enum)
            FROM queue
            RETURNING id AS cap_id, valid_from, valid_to, status AS cap_status
            """
        ).bindparams(
            bindparam("user_id", type_=Integer),
            bindparam("plan_id", type_=Integer),
            bindparam("validity", type_=Integer),
        ),
        {"user_id": user_id, "plan_id": plan_id, "phone": phone, "validity": validity_days},
    )
    row: RowT = result.one()
    return row


async def insert_ledger_row(conn: AsyncConnection, values: Mapping[str, Any]) -> RowT:
    """A ledger row (the wallet trigger moves the balance for wallet/success rows)."""
    result = await conn.execute(transactions.insert().values(**values).returning(*transactions.c))
    row: RowT = result.one()
    return row


async def pay_referral_reward(conn: AsyncConnection, reward_id: int) -> None:
    await conn.execute(
        update(referralrewards)
        .where(referralrewards.c.reward_id == reward_id)
        .values(status="paid")
    )


def _buyer_statement(exclude_txn: bool) -> Any:
    earlier = select(transactions.c.txn_id).where(
        transactions.c.user_id == bindparam("user_id"),
        transactions.c.source.in_(["recharge", "autopay"]),
        # A pending (externally paid) recharge counts: its first-recharge price was
        # given when it was charged, so a second one must not get it too.
        transactions.c.status.in_(["success", "pending"]),
    )
    if exclude_txn:
        earlier = earlier.where(transactions.c.txn_id != bindparam("exclude_txn"))
    return select(
        users.c.user_id,
        users.c.user_type,
        users.c.status,
        users.c.phone_number,
        users.c.wallet_balance,
        earlier.limit(1).exists().label("has_recharged"),
    ).where(users.c.user_id == bindparam("user_id"))


# Built once: constructing statements per call costs more than running them.
_BUYER = _buyer_statement(exclude_txn=False)
_BUYER_EXCLUDING = _buyer_statement(exclude_txn=True)


async def buyer(
    conn: AsyncConnection, user_id: int, *, exclude_txn: int | None = None
) -> RowT | None:
    """The paying user, and whether a recharge of theirs (other than ``exclude_txn``)
    has succeeded or is still waiting for its payment (``has_recharged``)."""
    if exclude_txn is None:
        result = await conn.execute(_BUYER, {"user_id": user_id})
    else:
        result = await conn.execute(
            _BUYER_EXCLUDING, {"user_id": user_id, "exclude_txn": exclude_txn}
        )
    row: RowT | None = result.one_or_none()
    return row


async def queue_end(conn: AsyncConnection, phone: str) -> datetime | None:
    result = await conn.execute(
        select(func.max(currentactiveplans.c.valid_to)).where(
            currentactiveplans.c.phone_number == phone,
            currentactiveplans.c.status.in_(["active", "queued"]),
            currentactiveplans.c.valid_to > func.now(),
        )
    )
    value: datetime | None = result.scalar_one_or_none()
    return value


# --- reads --------------------------------------------------------------------------------

_CAP_COLUMNS = (*currentactiveplans.c, plans.c.plan_name)


def _caps() -> Any:
    return select(*_CAP_COLUMNS).select_from(
        currentactiveplans.join(plans, plans.c.plan_id == currentactiveplans.c.plan_id)
    )


async def transaction_by_id(conn: AsyncConnection, txn_id: int) -> RowT | None:
    result = await conn.execute(select(transactions).where(transactions.c.txn_id == txn_id))
    row: RowT | None = result.one_or_none()
    return row


async def active_plan_by_id(conn: AsyncConnection, cap_id: int) -> RowT | None:
    result = await conn.execute(_caps().where(currentactiveplans.c.id == cap_id))
    row: RowT | None = result.one_or_none()
    return row


async def active_plan_for_txn(conn: AsyncConnection, txn: RowT) -> RowT | None:
    """The plan a recharge activated: same user, plan and number, created with it."""
    result = await conn.execute(
        _caps()
        .where(
            currentactiveplans.c.user_id == txn.user_id,
            currentactiveplans.c.plan_id == txn.plan_id,
            currentactiveplans.c.phone_number == txn.to_phone_number,
            currentactiveplans.c.created_at >= txn.created_at,
        )
        .order_by(currentactiveplans.c.created_at, currentactiveplans.c.id)
        .limit(1)
    )
    row: RowT | None = result.one_or_none()
    return row


async def list_recharges(
    conn: AsyncConnection,
    *,
    user_id: int,
    phone: str | None,
    status: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Sequence[RowT]:
    query = select(transactions).where(
        transactions.c.user_id == user_id,
        transactions.c.source.in_(["recharge", "autopay"]),
        transactions.c.txn_type == "debit",
    )
    if phone is not None:
        query = query.where(transactions.c.to_phone_number == phone)
    if status is not None:
        query = query.where(transactions.c.status == status)
    if created_after is not None:
        query = query.where(transactions.c.created_at >= created_after)
    if created_before is not None:
        query = query.where(transactions.c.created_at < created_before)
    result = await conn.execute(
        pagination.keyset_query(
            query, transactions.c.created_at, transactions.c.txn_id, after, limit, newest_first=True
        )
    )
    rows: Sequence[RowT] = result.all()
    return rows


async def list_active_plans(
    conn: AsyncConnection,
    *,
    user_id: int,
    phone: str | None,
    status: str | None,
    after_id: int | None,
    limit: int,
) -> Sequence[RowT]:
    query = _caps().where(currentactiveplans.c.user_id == user_id)
    if phone is not None:
        query = query.where(currentactiveplans.c.phone_number == phone)
    if status is not None:
        query = query.where(currentactiveplans.c.status == status)
    if after_id is not None:
        query = query.where(currentactiveplans.c.id < after_id)
    result = await conn.execute(query.order_by(currentactiveplans.c.id.desc()).limit(limit))
    rows: Sequence[RowT] = result.all()
    return rows


async def referral_reward_on_first_recharge(
    conn: AsyncConnection, txn: RowT, reward_amount: Decimal
) -> RowT | None:
    """Record the referrer's reward if ``txn`` is the buyer's first successful recharge."""
    if reward_amount <= 0:
        return None
    result = await conn.execute(
        text(
            """
            INSERT INTO referralrewards (referrer_id, referred_id, reward_amount)
            SELECT referrer.user_id, buyer.user_id, :reward_amount
            FROM users buyer
            JOIN users referrer ON referrer.referral_code = buyer.referred_by
            WHERE buyer.user_id = :user_id
              AND NOT EXISTS (
                  SELECT 1 FROM transactions earlier
                  WHERE earlier.user_id = :user_id AND earlier.txn_id <> :txn_id
                    AND earlier.source IN ('recharge', 'autopay')
                    AND earlier.status = 'success')
            ON CONFLICT (referred_id) DO NOTHING
            RETURNING reward_id, referrer_id, reward_amount, status
            """
        ).bindparams(
            bindparam("reward_amount", type_=Numeric(10, 2)),
            bindparam("user_id", type_=Integer),
            bindparam("txn_id", type_=Integer),
        ),
        {"reward_amount": reward_amount, "user_id": txn.user_id, "txn_id": txn.txn_id},
    )
    row: RowT | None = result.one_or_none()
    return row
