"""SQL for recharges and the plans they queue on a number (``currentactiveplans`` and
``recharges``: this module is their only writer).

The hot path is two statements in one transaction, each built once from the fragments
of the modules that own the tables it touches (idempotency keys: server/core/
idempotency.py; the ledger and referral rewards: server/ledger/queries.py; the audit
outbox: server/audit/queries.py; the plan queue: here):

1. :data:`LOCK_AND_CLAIM` takes the per-number advisory lock (so the queue of plans on
   a number is computed by one recharge at a time; the number is the payer's own when
   the request names none), claims the idempotency key and reads the payer;
2. :data:`RECHARGE` (one statement of data-modifying CTEs) inserts the ledger row (the
   wallet trigger debits the wallet), queues or activates the plan, records what the
   recharge showed (``recharges``: the plan period, the offer's discount and cashback),
   records a referral reward on the buyer's first recharge, completes the idempotency
   key and writes the audit event into the outbox.

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
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Integer, Numeric, String

from server.audit.queries import insert_event_sql
from server.core import idempotency, pagination
from server.core.schema import currentactiveplans, plans, recharges, users
from server.ledger.queries import (
    HAS_RECHARGED_SQL,
    INSERT_RECHARGE_DEBIT_SQL,
    has_recharged,
    referral_reward_sql,
)

RowT = Row[Any]

#: Plans that cover a number now or later: the queue a new plan goes behind.
COVERING_SQL = "status IN ('active', 'queued') AND valid_to > now()"
COVERING = (
    currentactiveplans.c.status.in_(["active", "queued"]),
    currentactiveplans.c.valid_to > func.now(),
)
#: The advisory lock of one phone number (the queue on it), for this transaction.
PHONE_LOCK_SQL = "pg_advisory_xact_lock(hashtextextended({phone}, 7))"


#: The end of the queue on ``:phone``: when the last plan covering it ends (NULL: none).
QUEUE_END_SQL = f"""SELECT max(valid_to) AS until FROM currentactiveplans
        WHERE phone_number = :phone AND {COVERING_SQL}"""


def queue_plan_sql(*, source: str) -> str:
    """Queue ``:plan_id`` for ``:user_id`` on ``:phone`` for ``:validity`` days behind the
    plans covering it (active now when none does), once per row of ``source``, which
    names a CTE ``queue`` of :data:`QUEUE_END_SQL`; the caller holds the number's lock.
    Returns ``id, valid_from, valid_to, status``."""
    return f"""INSERT INTO currentactiveplans (user_id, plan_id, phone_number, valid_from,
            valid_to, status)
        SELECT :user_id, :plan_id, :phone,
            greatest(now(), coalesce(queue.until, now())),
            greatest(now(), coalesce(queue.until, now())) + make_interval(days => :validity),
            CAST(CASE WHEN queue.until > now() THEN 'queued' ELSE 'active' END
                 AS active_plan_status_enum)
        FROM {source}
        RETURNING id, valid_from, valid_to, status"""


#: What the recharge showed besides its ledger row, for GetRecharge/ListRecharges: the
#: plan period (CTE ``cap``) of the ledger row (CTE ``txn``), ``:discount``,
#: ``:cashback`` and ``:bonus`` (JSON text or NULL). The cashback's own ledger row is
#: linked after it is written (:func:`link_cashback`).
RECORD_RECHARGE_SQL = """INSERT INTO recharges (txn_id, active_plan_id, discount, cashback,
            bonus)
        SELECT txn.txn_id, cap.id, :discount, :cashback, CAST(:bonus AS jsonb) FROM txn, cap"""


LOCK_AND_CLAIM = text(
    f"""
    WITH target AS (
        SELECT coalesce(CAST(:phone AS text),
                        (SELECT phone_number FROM users WHERE user_id = :user_id)) AS phone
    ),
    phone_lock AS (
        SELECT {PHONE_LOCK_SQL.format(phone="target.phone")} FROM target
    ),
    claim AS (
        {idempotency.claim_sql(source="phone_lock")}
    )
    SELECT (SELECT count(*) FROM claim) = 1 AS claimed,
           (SELECT phone FROM target) AS locked_phone,
           payer.user_id, payer.user_type, payer.status, payer.phone_number,
           {HAS_RECHARGED_SQL.format(user="payer.user_id")} AS has_recharged
    FROM (SELECT 1) AS one
    LEFT JOIN users AS payer ON payer.user_id = :user_id
    """
).bindparams(bindparam("user_id", type_=Integer), bindparam("phone", type_=String))

RECHARGE = text(
    f"""
    WITH queue AS (
        {QUEUE_END_SQL}
    ),
    txn AS ({INSERT_RECHARGE_DEBIT_SQL}
    ),
    cap AS (
        {queue_plan_sql(source="queue, txn")}
    ),
    shown AS (
        {RECORD_RECHARGE_SQL}
    ),
    reward AS ({referral_reward_sql(after="txn")}
    ),
    idem AS (
        {
        idempotency.complete_sql(
            result="jsonb_build_object('txn_id', txn.txn_id, 'active_plan_id', cap.id)",
            source="txn, cap",
        )
    }
    ),
    audit AS (
        {
        insert_event_sql(
            "jsonb_set(CAST(:audit_event AS jsonb), '{details,txn_id}', to_jsonb(txn.txn_id))",
            source="txn",
            when=":audit_event IS NOT NULL",
        )
    }
    )
    SELECT txn.*, cap.id AS cap_id, cap.valid_from, cap.valid_to, cap.status AS cap_status,
           reward.reward_id, reward.referrer_id, reward.status AS reward_status
    FROM txn CROSS JOIN cap LEFT JOIN reward ON true
    """
).bindparams(
    bindparam("amount", type_=Numeric(10, 2)),
    bindparam("discount", type_=Numeric(10, 2)),
    bindparam("cashback", type_=Numeric(10, 2)),
    bindparam("reward_amount", type_=Numeric(10, 2)),
    bindparam("validity", type_=Integer),
    bindparam("user_id", type_=Integer),
    bindparam("plan_id", type_=Integer),
    bindparam("offer_id", type_=Integer),
    bindparam("audit_event", type_=String),
    bindparam("bonus", type_=String),
)

_QUEUE_PLAN = text(
    f"""
    WITH queue AS (
        {QUEUE_END_SQL}
    )
    {queue_plan_sql(source="queue")}
    """
).bindparams(
    bindparam("user_id", type_=Integer),
    bindparam("plan_id", type_=Integer),
    bindparam("validity", type_=Integer),
)
_LOCK_PHONE = text(f"SELECT {PHONE_LOCK_SQL.format(phone=':phone')}")


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
            **idempotency.TTL_PARAMS,
        },
    )
    row: RowT = result.one()
    return row


async def lock_phone(conn: AsyncConnection, phone: str) -> None:
    await conn.execute(_LOCK_PHONE, {"phone": phone})


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
    discount: Decimal,
    cashback: Decimal,
    bonus: Mapping[str, Any] | None,
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
            "discount": discount,
            "cashback": cashback,
            "bonus": json.dumps(bonus) if bonus is not None else None,
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
        _QUEUE_PLAN,
        {"user_id": user_id, "plan_id": plan_id, "phone": phone, "validity": validity_days},
    )
    row: RowT = result.one()
    return row


async def record_pending_recharge(
    conn: AsyncConnection,
    *,
    txn_id: int,
    discount: Decimal,
    cashback: Decimal,
    bonus: Mapping[str, Any] | None,
) -> None:
    """What an externally paid recharge waiting for its payment showed: its discount and
    the cashback and bonus promised (no plan period yet)."""
    await conn.execute(
        insert(recharges).values(txn_id=txn_id, discount=discount, cashback=cashback, bonus=bonus)
    )


async def link_cashback(conn: AsyncConnection, *, txn_id: int, cashback_txn_id: int) -> None:
    """The cashback of recharge ``txn_id`` was credited by ``cashback_txn_id``."""
    await conn.execute(
        update(recharges)
        .where(recharges.c.txn_id == txn_id)
        .values(cashback_txn_id=cashback_txn_id)
    )


async def record_settled_recharge(
    conn: AsyncConnection,
    *,
    txn_id: int,
    active_plan_id: int,
    cashback: Decimal,
    cashback_txn_id: int | None,
    bonus: Mapping[str, Any] | None,
) -> None:
    """An externally paid recharge whose payment succeeded: its plan period, and the
    cashback actually credited and bonus given (the offer is re-checked at settlement)."""
    statement = insert(recharges).values(
        txn_id=txn_id,
        active_plan_id=active_plan_id,
        cashback=cashback,
        cashback_txn_id=cashback_txn_id,
        bonus=bonus,
    )
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[recharges.c.txn_id],
            set_={
                "active_plan_id": statement.excluded.active_plan_id,
                "cashback": statement.excluded.cashback,
                "cashback_txn_id": statement.excluded.cashback_txn_id,
                "bonus": statement.excluded.bonus,
            },
        )
    )


def _buyer_statement(exclude_txn: bool) -> Any:
    recharged = has_recharged(
        bindparam("user_id"), exclude_txn=bindparam("exclude_txn") if exclude_txn else None
    )
    return select(
        users.c.user_id,
        users.c.user_type,
        users.c.status,
        users.c.phone_number,
        users.c.wallet_balance,
        recharged.label("has_recharged"),
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
            currentactiveplans.c.phone_number == phone, *COVERING
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


#: A recharge's ``recharges`` row with its plan period (columns prefixed ``cap_``).
_CAP = currentactiveplans.alias("cap")
_RECHARGE_DETAILS: Any = (
    select(
        recharges.c.txn_id,
        recharges.c.discount,
        recharges.c.cashback,
        recharges.c.cashback_txn_id,
        recharges.c.bonus,
        _CAP.c.id.label("cap_id"),
        _CAP.c.user_id.label("cap_user_id"),
        _CAP.c.plan_id.label("cap_plan_id"),
        plans.c.plan_name.label("cap_plan_name"),
        _CAP.c.phone_number.label("cap_phone_number"),
        _CAP.c.valid_from.label("cap_valid_from"),
        _CAP.c.valid_to.label("cap_valid_to"),
        _CAP.c.status.label("cap_status"),
    )
    .select_from(
        recharges.outerjoin(_CAP, _CAP.c.id == recharges.c.active_plan_id).outerjoin(
            plans, plans.c.plan_id == _CAP.c.plan_id
        )
    )
    .where(recharges.c.txn_id.in_(bindparam("txn_ids", expanding=True)))
)


async def recharge_details(conn: AsyncConnection, txn_ids: Sequence[int]) -> Sequence[RowT]:
    """The ``recharges`` rows of these recharge debits, with their plan periods."""
    if not txn_ids:
        return []
    rows: Sequence[RowT] = (await conn.execute(_RECHARGE_DETAILS, {"txn_ids": list(txn_ids)})).all()
    return rows


async def list_active_plans(
    conn: AsyncConnection,
    *,
    user_id: int,
    phone: str | None,
    statuses: Sequence[str],
    after: tuple[datetime, int] | None,
    limit: int,
) -> Sequence[RowT]:
    """The user's plans of these statuses by valid_from (earliest first), then id."""
    cap = currentactiveplans.c
    query = _caps().where(cap.user_id == user_id, cap.status.in_(list(statuses)))
    if phone is not None:
        query = query.where(cap.phone_number == phone)
    result = await conn.execute(
        pagination.keyset_query(query, cap.valid_from, cap.id, after, limit, newest_first=False)
    )
    rows: Sequence[RowT] = result.all()
    return rows


# --- the plan queue over time (the scheduler) ------------------------------------------------

_EXPIRE = text(
    """
    UPDATE currentactiveplans cap
       SET status = 'expired'
      FROM plans p
     WHERE p.plan_id = cap.plan_id
       AND cap.status IN ('active', 'queued') AND cap.valid_to <= now()
    RETURNING cap.id, cap.user_id, cap.phone_number, p.plan_name,
              (SELECT status FROM currentactiveplans WHERE id = cap.id) AS old_status
    """
)
_ACTIVATE = text(
    """
    UPDATE currentactiveplans
       SET status = 'active'
     WHERE status = 'queued' AND valid_from <= now() AND valid_to > now()
    RETURNING id
    """
)
_UNCOVERED = text(
    f"""
    SELECT phone FROM unnest(CAST(:phones AS text[])) AS phone
    WHERE NOT EXISTS (
        SELECT 1 FROM currentactiveplans WHERE phone_number = phone AND {COVERING_SQL})
    """
)


async def expire_plans(conn: AsyncConnection) -> Sequence[RowT]:
    """Plans whose valid_to passed become ``expired``: ``id, user_id, phone_number,
    plan_name, old_status``."""
    rows: Sequence[RowT] = (await conn.execute(_EXPIRE)).all()
    return rows


async def activate_queued_plans(conn: AsyncConnection) -> list[int]:
    """Queued plans whose valid_from came become ``active``; their ids."""
    return sorted(int(i) for i in (await conn.execute(_ACTIVATE)).scalars())


async def uncovered_phones(conn: AsyncConnection, phones: Sequence[str]) -> set[str]:
    """Of ``phones``, those with no plan covering them now or later."""
    return set((await conn.execute(_UNCOVERED, {"phones": list(phones)})).scalars())


# --- ending the plan of a refunded recharge (AdminService RefundTransaction) -----------------


async def plan_of_recharge(conn: AsyncConnection, txn_id: int) -> RowT | None:
    """The plan period a recharge debit queued or activated: ``id, phone_number,
    status`` (None: none recorded)."""
    query: Any = (
        select(
            currentactiveplans.c.id,
            currentactiveplans.c.phone_number,
            currentactiveplans.c.status,
        )
        .select_from(
            recharges.join(
                currentactiveplans, currentactiveplans.c.id == recharges.c.active_plan_id
            )
        )
        .where(recharges.c.txn_id == txn_id)
    )
    row: RowT | None = (await conn.execute(query)).one_or_none()
    return row


async def end_plan_now(conn: AsyncConnection, plan_row_id: int) -> RowT | None:
    """End a plan period now: ``expired``, ``valid_to`` now (an active plan stops; a
    queued one ends where it would have started). Returns ``id, status, valid_from,
    valid_to`` (None: it was not active or queued)."""
    c = currentactiveplans.c
    result = await conn.execute(
        update(currentactiveplans)
        .where(c.id == plan_row_id, c.status.in_(["active", "queued"]))
        .values(
            status="expired",
            valid_to=func.least(c.valid_to, func.greatest(c.valid_from, func.now())),
        )
        .returning(c.id, c.status, c.valid_from, c.valid_to)
    )
    row: RowT | None = result.one_or_none()
    return row
