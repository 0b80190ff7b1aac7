"""AutoPay: users' recharge mandates (DDS AutoPay): the rules of CreateAutoPay,
ListAutoPays, UpdateAutoPay and DeleteAutoPay, and of executing a due mandate (no grpc;
every function takes the connection it works on as ``conn``).

Users manage their own mandates: another user's mandate is NOT_FOUND. The scheduler
executes due mandates (server/recharge/autopay/flows.py).

DeleteAutoPay deletes the row: a mandate holds no money and nothing references it
(the recharges it made stay in the ledger with source ``autopay``). A mandate the
scheduler is executing at that moment is locked; the delete waits for that tick.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server.audit.scope import audit_change, current_rpc
from server.auth.identifiers import normalize_phone
from server.auth.principal import Principal, customer_id
from server.core import idempotency, pagination
from server.core.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from server.notifications import notify
from server.recharge.autopay import queries
from server.recharge.domain import Order, RechargeResult

UPDATABLE_PATHS = ("plan_id", "phone_number", "status", "tag", "next_due_date")


@dataclass(frozen=True)
class AutoPay:
    """One mandate (DDS AutoPay)."""

    autopay_id: int
    user_id: int
    plan_id: int
    status: str
    tag: str
    next_due_date: datetime
    created_at: datetime
    phone_number: str | None

    @classmethod
    def of(cls, row: Any) -> AutoPay:
        return cls(
            int(row.autopay_id),
            int(row.user_id),
            int(row.plan_id),
            row.status,
            row.tag,
            row.next_due_date,
            row.created_at,
            row.phone_number,
        )


@dataclass(frozen=True)
class Mandate:
    """Requested values of a mandate (None: not given)."""

    plan_id: int
    phone_number: str
    status: str | None
    tag: str | None
    next_due_date: datetime | None


def _phone(value: str) -> str:
    phone = normalize_phone(value)
    if phone is None:
        raise InvalidArgument.field(
            "autopay.phone_number", "must be a 10-digit Indian mobile number"
        )
    return phone


def _future(value: datetime | None) -> list[FieldViolation]:
    if value is None:
        return [FieldViolation("autopay.next_due_date", "is required")]
    if value <= datetime.now(UTC):
        return [FieldViolation("autopay.next_due_date", "must be in the future")]
    return []


async def _active_plan(conn: AsyncConnection, plan_id: int) -> Any:
    if plan_id <= 0:
        raise InvalidArgument.field("autopay.plan_id", "must be a positive id")
    plan = await queries.plan(conn, plan_id)
    if plan is None:
        raise NotFound(f"plan {plan_id} not found", metadata={"plan_id": str(plan_id)})
    if plan.status != "active":
        raise FailedPrecondition("the plan is no longer sold", reason="PLAN_INACTIVE")
    return plan


async def create(
    who: Principal, request_id: str, mandate: Mandate, fingerprint: str, *, conn: AsyncConnection
) -> AutoPay:
    user_id = customer_id(who, "autopay mandates")
    violations: list[FieldViolation] = []
    try:
        idempotency.validate_request_id(request_id)
    except InvalidArgument as exc:
        violations.extend(exc.violations)
    if mandate.tag is None:
        violations.append(FieldViolation("autopay.tag", "is required (ONETIME or REGULAR)"))
    if mandate.plan_id <= 0:
        violations.append(FieldViolation("autopay.plan_id", "must be a positive id"))
    violations += _future(mandate.next_due_date)
    if violations:
        raise InvalidArgument.of(violations)
    phone = _phone(mandate.phone_number) if mandate.phone_number else None
    replay = await idempotency.claim(
        conn,
        caller=who.subject,
        request_id=request_id,
        rpc=current_rpc(),
        fingerprint=fingerprint,
    )
    if replay is not None:
        row = await queries.get_own(
            conn, autopay_id=int(replay.result["autopay_id"]), user_id=user_id
        )
        if row is None:
            raise NotFound("the autopay mandate this request created was deleted")
        return AutoPay.of(row)
    await queries.lock_user(conn, user_id)
    await _active_plan(conn, mandate.plan_id)
    if phone is None:
        phone = await queries.user_phone(conn, user_id)
        if phone is None:
            raise InvalidArgument.field("autopay.phone_number", "is required (no number on file)")
    status = mandate.status or "enabled"
    if status == "enabled" and await queries.enabled_duplicate(
        conn, user_id=user_id, phone=phone, plan_id=mandate.plan_id
    ):
        raise AlreadyExists(
            "an enabled autopay for this number and plan exists",
            reason="AUTOPAY_EXISTS",
        )
    row = await queries.insert(
        conn,
        {
            "user_id": user_id,
            "plan_id": mandate.plan_id,
            "phone_number": phone,
            "status": status,
            "tag": mandate.tag,
            "next_due_date": mandate.next_due_date,
        },
    )
    await idempotency.complete(
        conn,
        caller=who.subject,
        request_id=request_id,
        result={"autopay_id": row.autopay_id},
    )
    audit_change(
        "AutoPay",
        "INSERT",
        {"autopay_id": row.autopay_id, "plan_id": row.plan_id, "tag": row.tag},
    )
    return AutoPay.of(row)


async def list_own(
    who: Principal, *, status: str | None, page_size: int, page_token: str, conn: AsyncConnection
) -> tuple[list[AutoPay], str]:
    user_id = customer_id(who, "autopay mandates")
    page = pagination.parse(page_size, page_token, {"autopays": [user_id, status]})
    rows = await queries.list_own(
        conn,
        user_id=user_id,
        status=status,
        after=pagination.time_keyset(page.after),
        limit=page.fetch,
    )
    return pagination.time_page([AutoPay.of(r) for r in rows], page, "next_due_date", "autopay_id")


async def update(
    who: Principal,
    autopay_id: int,
    mandate: Mandate,
    paths: Iterable[str],
    *,
    conn: AsyncConnection,
) -> AutoPay:
    user_id = customer_id(who, "autopay mandates")
    fields = list(dict.fromkeys(paths))
    violations: list[FieldViolation] = []
    if autopay_id <= 0:
        violations.append(FieldViolation("autopay.autopay_id", "must be a positive id"))
    if not fields:
        violations.append(FieldViolation("update_mask", "name at least one field to update"))
    for path in fields:
        if path not in UPDATABLE_PATHS:
            violations.append(FieldViolation("update_mask", f"{path!r} cannot be updated"))
    if "next_due_date" in fields:
        violations += _future(mandate.next_due_date)
    if "tag" in fields and mandate.tag is None:
        violations.append(FieldViolation("autopay.tag", "must be ONETIME or REGULAR"))
    if "status" in fields and mandate.status is None:
        violations.append(FieldViolation("autopay.status", "must be ENABLED or DISABLED"))
    if "plan_id" in fields and mandate.plan_id <= 0:
        violations.append(FieldViolation("autopay.plan_id", "must be a positive id"))
    if "phone_number" in fields and not mandate.phone_number:
        violations.append(FieldViolation("autopay.phone_number", "must not be empty"))
    if violations:
        raise InvalidArgument.of(violations)
    values: dict[str, Any] = {}
    if "phone_number" in fields:
        values["phone_number"] = _phone(mandate.phone_number)
    for name in ("plan_id", "status", "tag", "next_due_date"):
        if name in fields:
            values[name] = getattr(mandate, name)
    await queries.lock_user(conn, user_id)
    current = await queries.get_own(conn, autopay_id=autopay_id, user_id=user_id, for_update=True)
    if current is None:
        raise NotFound(f"autopay {autopay_id} not found")
    if "plan_id" in values and values["plan_id"] != current.plan_id:
        await _active_plan(conn, values["plan_id"])
    status = values.get("status", current.status)
    due = values.get("next_due_date", current.next_due_date)
    if status == "enabled" and current.status != "enabled" and _future(due):
        raise InvalidArgument.field(
            "autopay.next_due_date",
            "must be in the future to enable the mandate (include it in update_mask)",
        )
    if status == "enabled" and await queries.enabled_duplicate(
        conn,
        user_id=user_id,
        phone=values.get("phone_number", current.phone_number),
        plan_id=values.get("plan_id", current.plan_id),
        exclude_id=autopay_id,
    ):
        raise AlreadyExists(
            "an enabled autopay for this number and plan exists",
            reason="AUTOPAY_EXISTS",
        )
    # A changed mandate starts afresh: no back-off from an earlier failure.
    row = await queries.update_row(conn, autopay_id, {**values, "last_error": None})
    audit_change(
        "AutoPay",
        "UPDATE",
        {"autopay_id": autopay_id, **{k: str(v) for k, v in values.items()}},
    )
    return AutoPay.of(row)


async def delete(who: Principal, autopay_id: int, *, conn: AsyncConnection) -> None:
    user_id = customer_id(who, "autopay mandates")
    if autopay_id <= 0:
        raise InvalidArgument.field("autopay_id", "must be a positive id")
    if not await queries.delete_own(conn, autopay_id=autopay_id, user_id=user_id):
        raise NotFound(f"autopay {autopay_id} not found")
    audit_change("AutoPay", "DELETE", {"autopay_id": autopay_id})


# --- executing due mandates (the scheduler: server/recharge/autopay/flows.py) -------------

#: Failures that may clear by themselves: the same occurrence is retried later.
TRANSIENT_REASONS = frozenset({"INSUFFICIENT_FUNDS", "ACCOUNT_BLOCKED", "IN_PROGRESS"})


@dataclass(frozen=True)
class DueMandate:
    """A mandate due now, locked by the transaction that runs it."""

    autopay_id: int
    user_id: int
    plan_id: int
    plan_name: str
    validity_days: int
    phone_number: str | None
    tag: str
    next_due_date: datetime
    last_error: str | None

    @property
    def request_id(self) -> str:
        """The idempotency key of this occurrence: a retried tick replays the recharge."""
        return f"autopay-{self.autopay_id}-{int(self.next_due_date.timestamp())}"

    @property
    def fingerprint(self) -> str:
        due = self.next_due_date.isoformat()
        return hashlib.sha256(f"autopay:{self.autopay_id}:{due}".encode()).hexdigest()

    @property
    def owner(self) -> Principal:
        """The mandate pays as its owner would, from their wallet."""
        return Principal("user", str(self.user_id))

    def order(self) -> Order:
        return Order(
            request_id=self.request_id,
            phone_number=self.phone_number or "",
            plan_id=self.plan_id,
            offer_id=None,
            payment_method="Wallet",
            payment_details={},
            user_id=0,
        )


def next_due(due: datetime, validity_days: int, now: datetime) -> datetime:
    """The due date one validity period on, skipping periods already in the past."""
    step = timedelta(days=max(validity_days, 1))
    result = due + step
    if result <= now:
        missed = (now - result) // step + 1
        result += step * missed
    return result


def _rupees(amount: Any) -> str:
    return f"\u20b9{amount}"


async def due_mandates(
    *, limit: int, retry_after_seconds: float, conn: AsyncConnection
) -> list[int]:
    """Ids of mandates due now (not locked), earliest first."""
    return await queries.due(conn, limit=limit, retry_after_seconds=retry_after_seconds)


async def lock_due(
    autopay_id: int, *, retry_after_seconds: float, conn: AsyncConnection
) -> DueMandate | None:
    """The mandate, locked until the transaction ends, if it is still due and no other
    replica's tick holds it."""
    row = await queries.lock_due(conn, autopay_id, retry_after_seconds=retry_after_seconds)
    if row is None:
        return None
    return DueMandate(
        int(row.autopay_id),
        int(row.user_id),
        int(row.plan_id),
        row.plan_name,
        int(row.validity),
        row.phone_number,
        row.tag,
        row.next_due_date,
        row.last_error,
    )


async def record_success(
    mandate: DueMandate, result: RechargeResult, *, now: datetime, conn: AsyncConnection
) -> None:
    """REGULAR mandates move on by the plan's validity, ONETIME ones are disabled; the
    owner is told (``autopay_success``)."""
    following: datetime | None = None
    if mandate.tag == "regular":
        following = next_due(mandate.next_due_date, mandate.validity_days, now)
        await queries.record_run(conn, mandate.autopay_id, next_due_date=following)
    else:
        await queries.record_run(conn, mandate.autopay_id, disable=True)
    phone = mandate.phone_number or "your number"
    more = f" Next payment on {following.date().isoformat()}." if following is not None else ""
    await notify(
        conn,
        user_id=mandate.user_id,
        type_name="autopay_success",
        description=(
            f"Autopay recharged {phone} with {mandate.plan_name} for "
            f"{_rupees(result.txn.amount)}.{more}"
        ),
        attachments=[
            {
                "kind": "autopay",
                "autopay_id": mandate.autopay_id,
                "txn_id": result.txn.txn_id,
                "next_due_date": following.isoformat() if following else None,
            }
        ],
    )


async def record_failure(mandate: DueMandate, error: DomainError, *, conn: AsyncConnection) -> bool:
    """``last_error`` is set; a permanent failure (plan withdrawn, not eligible, bad
    number...) disables the mandate, a transient one is retried later. The owner is told
    (``autopay_failed``) when the error first appears. Whether it was permanent."""
    text = f"{error.reason}: {error.message}"
    permanent = error.reason not in TRANSIENT_REASONS
    await queries.record_run(conn, mandate.autopay_id, disable=permanent, error=text)
    if permanent or mandate.last_error != text:
        then = (
            "The autopay was turned off; update it to resume."
            if permanent
            else "We will try again later."
        )
        phone = mandate.phone_number or "your number"
        await notify(
            conn,
            user_id=mandate.user_id,
            type_name="autopay_failed",
            description=(
                f"Autopay of {mandate.plan_name} for {phone} failed: {error.message}. " + then
            ),
            attachments=[
                {"kind": "autopay", "autopay_id": mandate.autopay_id, "reason": error.reason}
            ],
        )
    return permanent
