"""AutoPay: users' recharge mandates (DDS AutoPay) and their RPCs (CreateAutoPay,
ListAutoPays, UpdateAutoPay, DeleteAutoPay).

The domain part (:class:`AutoPays`) takes plain values; :class:`AutoPayRpcs` only
converts protos. Users manage their own mandates: another user's mandate is NOT_FOUND.
The scheduler (server/jobs/autopay.py) executes due mandates.

DeleteAutoPay deletes the row: a mandate holds no money and nothing references it
(the recharges it made stay in the ledger with source ``autopay``). A mandate the
scheduler is executing at that moment is locked; the delete waits for that tick.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from gencharge.v1 import recharge_service_pb2 as pb
from server.audit.scope import audit_change
from server.auth.identifiers import normalize_phone
from server.auth.principal import Principal, principal
from server.core import db, idempotency, pagination, protoconv
from server.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from server.recharge import autopay_queries as queries
from server.recharge.rpc_base import RechargeRpcBase

Context = grpc.aio.ServicerContext[Any, Any]
RowT = Row[Any]

CREATE_RPC = "/gencharge.v1.RechargeService/CreateAutoPay"
UPDATABLE_PATHS = ("plan_id", "phone_number", "status", "tag", "next_due_date")
STATUSES = {pb.AUTO_PAY_STATUS_ENABLED: "enabled", pb.AUTO_PAY_STATUS_DISABLED: "disabled"}
STATUSES_BY_NAME = {v: k for k, v in STATUSES.items()}
TAGS = {pb.AUTO_PAY_TAG_ONETIME: "onetime", pb.AUTO_PAY_TAG_REGULAR: "regular"}
TAGS_BY_NAME = {v: k for k, v in TAGS.items()}


@dataclass(frozen=True)
class Mandate:
    """Requested values of a mandate (None: not given)."""

    plan_id: int
    phone_number: str
    status: str | None
    tag: str | None
    next_due_date: datetime | None


def _user(who: Principal) -> int:
    if who.kind != "user":
        raise PermissionDenied("only customers have autopay mandates", reason="USER_ONLY")
    return who.numeric_id


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


async def _active_plan(conn: Any, plan_id: int) -> RowT:
    if plan_id <= 0:
        raise InvalidArgument.field("autopay.plan_id", "must be a positive id")
    plan = await queries.plan(conn, plan_id)
    if plan is None:
        raise NotFound(f"plan {plan_id} not found", metadata={"plan_id": str(plan_id)})
    if plan.status != "active":
        raise FailedPrecondition("the plan is no longer sold", reason="PLAN_INACTIVE")
    return plan


class AutoPays:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(
        self, who: Principal, request_id: str, mandate: Mandate, fingerprint: str
    ) -> RowT:
        user_id = _user(who)
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
        async with db.transaction(self._engine) as conn:
            replay = await idempotency.claim(
                conn,
                caller=who.subject,
                request_id=request_id,
                rpc=CREATE_RPC,
                fingerprint=fingerprint,
            )
            if replay is not None:
                row = await queries.get_own(
                    conn, autopay_id=int(replay.result["autopay_id"]), user_id=user_id
                )
                if row is None:
                    raise NotFound("the autopay mandate this request created was deleted")
                return row
            await queries.lock_user(conn, user_id)
            await _active_plan(conn, mandate.plan_id)
            if phone is None:
                phone = await queries.user_phone(conn, user_id)
                if phone is None:
                    raise InvalidArgument.field(
                        "autopay.phone_number", "is required (no number on file)"
                    )
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
        return row

    async def list_own(
        self, who: Principal, *, status: str | None, page_size: int, page_token: str
    ) -> tuple[list[RowT], str]:
        user_id = _user(who)
        page = pagination.parse(page_size, page_token, {"autopays": [user_id, status]})
        async with db.read_only(self._engine) as conn:
            rows = await queries.list_own(
                conn,
                user_id=user_id,
                status=status,
                after=pagination.time_keyset(page.after),
                limit=page.fetch,
            )
        return pagination.time_page(rows, page, "next_due_date", "autopay_id")

    async def update(
        self, who: Principal, autopay_id: int, mandate: Mandate, paths: Iterable[str]
    ) -> RowT:
        user_id = _user(who)
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
        async with db.transaction(self._engine) as conn:
            await queries.lock_user(conn, user_id)
            current = await queries.get_own(
                conn, autopay_id=autopay_id, user_id=user_id, for_update=True
            )
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
        return row

    async def delete(self, who: Principal, autopay_id: int) -> None:
        user_id = _user(who)
        if autopay_id <= 0:
            raise InvalidArgument.field("autopay_id", "must be a positive id")
        async with db.transaction(self._engine) as conn:
            if not await queries.delete_own(conn, autopay_id=autopay_id, user_id=user_id):
                raise NotFound(f"autopay {autopay_id} not found")
            audit_change("AutoPay", "DELETE", {"autopay_id": autopay_id})


# --- proto <-> domain ---------------------------------------------------------------------


def autopay_message(row: RowT) -> pb.AutoPay:
    return pb.AutoPay(
        autopay_id=row.autopay_id,
        user_id=row.user_id,
        plan_id=row.plan_id,
        status=STATUSES_BY_NAME[row.status],
        tag=TAGS_BY_NAME[row.tag],
        next_due_date=protoconv.timestamp(row.next_due_date),
        created_at=protoconv.timestamp(row.created_at),
        phone_number=row.phone_number or "",
    )


def _due_date(message: pb.AutoPay) -> datetime | None:
    if not message.HasField("next_due_date"):
        return None
    value: Timestamp = message.next_due_date
    try:
        return value.ToDatetime(UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidArgument.field("autopay.next_due_date", "is not a valid timestamp") from None


def _enum(name: str, value: int, mapping: dict[Any, str]) -> str | None:
    if value == 0:
        return None
    try:
        return mapping[value]
    except KeyError:
        raise InvalidArgument.field(f"autopay.{name}", f"unknown value {value}") from None


def mandate_of(message: pb.AutoPay) -> Mandate:
    return Mandate(
        plan_id=message.plan_id,
        phone_number=message.phone_number,
        status=_enum("status", message.status, STATUSES),
        tag=_enum("tag", message.tag, TAGS),
        next_due_date=_due_date(message),
    )


class AutoPayRpcs(RechargeRpcBase):
    def _autopays(self) -> AutoPays:
        return AutoPays(self._resources.engine)

    async def CreateAutoPay(self, request: pb.CreateAutoPayRequest, context: Context) -> pb.AutoPay:
        row = await self._autopays().create(
            principal(),
            request.request_id,
            mandate_of(request.autopay),
            idempotency.request_hash(request),
        )
        return autopay_message(row)

    async def ListAutoPays(
        self, request: pb.ListAutoPaysRequest, context: Context
    ) -> pb.ListAutoPaysResponse:
        rows, token = await self._autopays().list_own(
            principal(),
            status=protoconv.enum_filter("status", request.status, STATUSES),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListAutoPaysResponse(
            autopays=[autopay_message(r) for r in rows], next_page_token=token
        )

    async def UpdateAutoPay(self, request: pb.UpdateAutoPayRequest, context: Context) -> pb.AutoPay:
        row = await self._autopays().update(
            principal(),
            request.autopay.autopay_id,
            mandate_of(request.autopay),
            request.update_mask.paths,
        )
        return autopay_message(row)

    async def DeleteAutoPay(
        self, request: pb.DeleteAutoPayRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._autopays().delete(principal(), request.autopay_id)
        return empty_pb2.Empty()
