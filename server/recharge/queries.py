"""SQL for recharges and the plans they queue on a number (``currentactiveplans`` and
``recharges``: this module is their only writer).

A recharge's writes are server-side functions (migration 0019 explains them):

- :data:`WALLET_RECHARGE` calls ``gencharge_wallet_recharge``: a whole wallet recharge
  (lock the number, check the key and the payer, lock the wallet, claim the key, write)
  in one prepared statement in autocommit, one round trip. It answers with an
  ``outcome``; anything but ``ok`` wrote nothing.
- :data:`WALLET_RECHARGES` calls ``gencharge_wallet_recharges``: a group of wallet
  recharges (a BatchRecharge stream's, or concurrent unary calls') in one transaction
  (group commit, server/recharge/group.py).
- :data:`RECORD_RECHARGE` calls ``gencharge_record_recharge``: the writes alone, for an
  externally paid recharge that the gateway authorised, in the caller's transaction.

The wallet recharges go through the asyncpg connection (server/core/db.py
``Database.driver``): their positional parameters are in :data:`WALLET_PARAMS` order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy import Row, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Integer, Numeric, String

from server.core import pagination
from server.core.schema import currentactiveplans, plans, recharges, users
from server.ledger.queries import (
    has_recharged,
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


#: The parameters of ``gencharge_wallet_recharge``, in order (:func:`wallet_recharge`).
WALLET_PARAMS = (
    "caller",
    "request_id",
    "rpc",
    "request_hash",
    "key_ttl",
    "user_id",
    "phone",
    "assume_user_type",
    "assume_first",
    "write",
    "plan_id",
    "offer_id",
    "validity",
    "service_type",
    "amount",
    "discount",
    "cashback",
    "bonus",
    "source",
    "reward_amount",
    "audit_event",
)
#: What the wallet functions answer (``gencharge_wallet_recharges`` adds ``item``).
WALLET_RESULT = """outcome, user_type, first_recharge, payer_phone, phone, txn_id,
    created_at, balance_after, cap_id, valid_from, valid_to, cap_status, cashback_txn_id,
    cashback_created_at, cashback_balance_after"""
WALLET_RECHARGE = (
    f"SELECT {WALLET_RESULT} FROM gencharge_wallet_recharge("
    + ", ".join(f"${n}" for n in range(1, len(WALLET_PARAMS) + 1))
    + ")"
)
#: The parameters every recharge of a group shares (the group function takes them
#: first, from the first item).
GROUP_SHARED_PARAMS = ("key_ttl", "reward_amount")
#: The group function's arrays after those: one per other parameter, in
#: :data:`WALLET_PARAMS` order.
GROUP_ITEM_PARAMS = tuple(name for name in WALLET_PARAMS if name not in GROUP_SHARED_PARAMS)
WALLET_RECHARGES = (
    f"SELECT item, {WALLET_RESULT} FROM gencharge_wallet_recharges("
    + ", ".join(f"${n}" for n in range(1, 1 + len(GROUP_SHARED_PARAMS) + len(GROUP_ITEM_PARAMS)))
    + ")"
)

RECORD_RECHARGE = text(
    """SELECT txn_id, created_at, balance_after, cap_id, valid_from, valid_to, cap_status,
              cashback_txn_id, cashback_created_at, cashback_balance_after
       FROM gencharge_record_recharge(:caller, :request_id, :user_id, :from_phone, :phone,
           :plan_id, :offer_id, :validity, :service_type, :amount, :discount, :cashback,
           CAST(:bonus AS jsonb), :category, :source, :payment_method,
           :payment_transaction_id, :reward_amount, CAST(:audit_event AS jsonb))"""
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


async def driver_of(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under ``conn`` (its transaction, if one is open)."""
    raw = await conn.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    return driver


async def wallet_recharge(driver: asyncpg.Connection, args: Mapping[str, Any]) -> Mapping[str, Any]:
    """One wallet recharge (``args``: :data:`WALLET_PARAMS` by name): its own
    transaction unless ``driver`` is in one. Its :data:`WALLET_RESULT` row."""
    row: Mapping[str, Any] = await driver.fetchrow(
        WALLET_RECHARGE, *(args[name] for name in WALLET_PARAMS)
    )
    return row


async def wallet_recharges(
    driver: asyncpg.Connection, items: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """A group of wallet recharges in one transaction (each item: :data:`WALLET_PARAMS`
    by name; ``key_ttl`` and ``reward_amount`` are the first item's). One row per item,
    in order."""
    shared = [items[0][name] for name in GROUP_SHARED_PARAMS]
    columns = [[item[name] for item in items] for name in GROUP_ITEM_PARAMS]
    rows: list[Mapping[str, Any]] = await driver.fetch(WALLET_RECHARGES, *shared, *columns)
    rows.sort(key=lambda r: r["item"])
    return rows


async def lock_phone(conn: AsyncConnection, phone: str) -> None:
    await conn.execute(_LOCK_PHONE, {"phone": phone})


async def record_recharge(
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
    """Write a priced recharge (the caller holds the number's lock and the key)."""
    result = await conn.execute(
        RECORD_RECHARGE,
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
