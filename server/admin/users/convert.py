"""Proto <-> values for the operators' user RPCs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from gencharge.v1 import admin_service_pb2 as pb
from gencharge.v1 import identity_pb2
from server.admin.users import domain
from server.auth import convert as auth_convert
from server.core import protoconv

#: ListUsers' status filter (DDS Users.status).
STATUSES = {value: name for name, value in auth_convert.USER_STATUSES.items()}


def _time(stamp: Timestamp, present: bool) -> datetime | None:
    return stamp.ToDatetime(tzinfo=UTC) if present else None


def user_filter_of(request: pb.ListUsersRequest) -> domain.UserFilter:
    return domain.UserFilter(
        status=protoconv.enum_filter("status", request.status, STATUSES),
        user_type=protoconv.enum_filter("user_type", request.user_type, protoconv.USER_TYPES),
        query=request.query,
        created_after=_time(request.created_after, request.HasField("created_after")),
        created_before=_time(request.created_before, request.HasField("created_before")),
    )


def _plan(plan: domain.UserPlan) -> identity_pb2.UserPlan:
    return identity_pb2.UserPlan(
        id=plan.id,
        plan_id=plan.plan_id,
        plan_name=plan.plan_name,
        phone_number=plan.phone_number,
        valid_from=protoconv.timestamp(plan.valid_from),
        valid_to=protoconv.timestamp(plan.valid_to),
        queued=plan.queued,
    )


def details_message(details: domain.UserDetails) -> identity_pb2.UserDetails:
    return identity_pb2.UserDetails(
        last_login_at=protoconv.timestamp(details.last_login_at),
        active_sessions=details.active_sessions,
        active_plans=[_plan(p) for p in details.plans],
        archived_at=protoconv.timestamp(details.archived_at),
        erased=details.erased,
    )


def user_message(view: domain.UserView) -> identity_pb2.User:
    message = auth_convert.user_message(view.user)
    if view.details is not None:
        message.details.CopyFrom(details_message(view.details))
    return message


CONTENT_TYPE = "application/json"


def export_response(document: dict[str, Any], body: bytes) -> pb.ExportUserDataResponse:
    generated = datetime.fromisoformat(str(document["generated_at"]).replace("Z", "+00:00"))
    return pb.ExportUserDataResponse(
        document=body, content_type=CONTENT_TYPE, generated_at=protoconv.timestamp(generated)
    )
