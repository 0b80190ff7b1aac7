"""Proto <-> insight values (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from gencharge.v1 import admin_service_pb2 as pb
from server.admin.insight.domain import AuditFilters, AuditRecord, DashboardStats
from server.core import protoconv

#: AuditActionType -> AuditLog.action_type.
ACTION_TYPES: Final = {
    pb.AUDIT_ACTION_TYPE_INSERT: "INSERT",
    pb.AUDIT_ACTION_TYPE_UPDATE: "UPDATE",
    pb.AUDIT_ACTION_TYPE_DELETE: "DELETE",
    pb.AUDIT_ACTION_TYPE_SECURITY: "SECURITY",
}
_ACTION_NUMBERS: Final = {name: number for number, name in ACTION_TYPES.items()}


def _time(message: Timestamp) -> datetime:
    return message.ToDatetime(tzinfo=UTC)


def optional_time(owner: object, field: str) -> datetime | None:
    """The Timestamp ``field`` of ``owner`` as an aware datetime; None when unset."""
    if not owner.HasField(field):  # type: ignore[attr-defined]
        return None
    value: Timestamp = getattr(owner, field)
    return _time(value)


def audit_filters(request: pb.ListAuditLogsRequest) -> AuditFilters:
    return AuditFilters(
        actor=request.user_id,
        customer_id=request.customer_id,
        table_name=request.table_name,
        action_type=protoconv.enum_filter("action_type", request.action_type, ACTION_TYPES),
        rpc=request.rpc,
        created_after=optional_time(request, "created_after"),
        created_before=optional_time(request, "created_before"),
    )


def audit_entry(record: AuditRecord) -> pb.AuditLogEntry:
    return pb.AuditLogEntry(
        audit_id=record.audit_id,
        user_id=record.actor,
        table_name=record.table_name,
        action_type=_ACTION_NUMBERS.get(record.action_type, pb.AUDIT_ACTION_TYPE_UNSPECIFIED),
        details=protoconv.struct(record.details),
        created_at=protoconv.timestamp(record.created_at),
        rpc=record.rpc,
        request_id=record.request_id,
        outcome=record.outcome,
        customer_id=record.customer_id,
        peer=record.peer,
    )


def dashboard_message(stats: DashboardStats) -> pb.DashboardStats:
    return pb.DashboardStats(
        start_time=protoconv.timestamp(stats.start),
        end_time=protoconv.timestamp(stats.end),
        total_users=stats.total_users,
        active_users=stats.active_users,
        blocked_users=stats.blocked_users,
        new_users=stats.new_users,
        recharge_count=stats.recharge_count,
        recharge_amount=protoconv.money(stats.recharge_amount),
        topup_count=stats.topup_count,
        topup_amount=protoconv.money(stats.topup_amount),
        refund_amount=protoconv.money(stats.refund_amount),
        failed_transaction_count=stats.failed_transaction_count,
        active_plan_count=stats.active_plan_count,
        top_plans=[
            pb.PlanStats(
                plan_id=plan.plan_id,
                plan_name=plan.plan_name,
                recharge_count=plan.recharge_count,
                recharge_amount=protoconv.money(plan.recharge_amount),
            )
            for plan in stats.top_plans
        ],
    )
