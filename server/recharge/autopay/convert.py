"""AutoPay messages <-> mandate values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from gencharge.v1 import recharge_service_pb2 as pb
from server.core import protoconv
from server.core.errors import InvalidArgument
from server.recharge.autopay.domain import AutoPay, Mandate

STATUSES = {pb.AUTO_PAY_STATUS_ENABLED: "enabled", pb.AUTO_PAY_STATUS_DISABLED: "disabled"}
STATUSES_BY_NAME = {v: k for k, v in STATUSES.items()}
TAGS = {pb.AUTO_PAY_TAG_ONETIME: "onetime", pb.AUTO_PAY_TAG_REGULAR: "regular"}
TAGS_BY_NAME = {v: k for k, v in TAGS.items()}


def autopay_message(row: AutoPay) -> pb.AutoPay:
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
