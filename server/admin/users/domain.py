"""Operators' rules for customer accounts: listing and reading them, blocking,
archiving (DDS UsersArchive), ending their sessions, exporting and erasing their
personal data.

An archived customer: the ``usersarchive`` row holds the profile as it was (without
the password hash); the ``users`` row stays, blocked and without personal data, so
the ledger, plans and referrals that point at the user id keep their foreign keys
(server/auth/queries.py ``archive_user``). An erased customer is an archived one whose
archive row lost its personal fields too.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy.ext.asyncio import AsyncConnection

from server.admin.users import queries
from server.audit.scope import audit_change
from server.auth import domain as auth_domain
from server.auth.identifiers import normalize_phone
from server.core import pagination
from server.core.errors import FailedPrecondition, InvalidArgument, NotFound
from server.core.money import to_minor
from server.notifications import domain as notifications_domain

#: GetUser shows at most this many current plans.
MAX_PLANS_SHOWN = 100
#: The export carries at most this many audit events (newest first).
MAX_EXPORTED_AUDIT_EVENTS = 1_000
EXPORT_SCHEMA = "gencharge.user-export/v1"
#: What an ended session records as its reason.
BLOCKED_REASON = "blocked by an operator"
REVOKED_REASON = "revoked by an operator"
ARCHIVED_REASON = "account archived"
ERASED_REASON = "personal data erased"


# --- values -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserFilter:
    status: str | None = None
    user_type: str | None = None
    query: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True)
class UserPlan:
    id: int
    plan_id: int
    plan_name: str
    phone_number: str
    valid_from: datetime
    valid_to: datetime
    queued: bool


@dataclass(frozen=True)
class UserDetails:
    last_login_at: datetime | None = None
    active_sessions: int = 0
    plans: tuple[UserPlan, ...] = ()
    archived_at: datetime | None = None
    erased: bool = False


@dataclass(frozen=True)
class UserView:
    """A customer as an operator sees it; ``details`` only where the RPC fills them."""

    user: auth_domain.User
    details: UserDetails | None = None


@dataclass(frozen=True)
class Ended:
    """A change and the sessions it ended (for the session cache, after the commit)."""

    view: UserView
    sessions: tuple[uuid.UUID, ...]
    #: The details of the change's audit event (an erasure's, to complete with what
    #: was erased outside PostgreSQL: :func:`erased_elsewhere`).
    audit: Mapping[str, Any] = field(default_factory=dict)


# --- helpers ------------------------------------------------------------------------------


def required_reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise InvalidArgument.field("reason", "is required")
    return text


def _not_found(user_id: int) -> NotFound:
    return NotFound(
        f"user {user_id} not found", reason="USER_NOT_FOUND", metadata={"user_id": str(user_id)}
    )


def _archived(user_id: int) -> NotFound:
    return NotFound(
        f"user {user_id} is archived", reason="USER_ARCHIVED", metadata={"user_id": str(user_id)}
    )


async def _live(user_id: int, *, conn: AsyncConnection, lock: bool = False) -> auth_domain.User:
    """The live (not archived) user, locked FOR UPDATE on request; NOT_FOUND otherwise."""
    user = await auth_domain.user_by_id(user_id, conn=conn, lock=lock)
    if user is None:
        raise _not_found(user_id)
    if await queries.is_archived(conn, user_id):
        raise _archived(user_id)
    return user


def _is_erased(user: auth_domain.User) -> bool:
    return user.email is None and user.phone_number is None and user.name is None


# --- reads --------------------------------------------------------------------------------


def check_filter(f: UserFilter) -> None:
    if f.created_after and f.created_before and f.created_before <= f.created_after:
        raise InvalidArgument.field("created_before", "must be later than created_after")


async def list_users(
    f: UserFilter, *, page_size: int, page_token: str, conn: AsyncConnection
) -> tuple[list[auth_domain.User], str]:
    """Live customers matching ``f``, newest first."""
    check_filter(f)
    text = f.query.strip()
    filters = {
        "users": [
            f.status,
            f.user_type,
            text.lower(),
            f.created_after.isoformat() if f.created_after else None,
            f.created_before.isoformat() if f.created_before else None,
        ]
    }
    page = pagination.parse(page_size, page_token, filters)
    rows = await queries.list_users(
        conn,
        status=f.status,
        user_type=f.user_type,
        text=text or None,
        phone=normalize_phone(text) if text else None,
        created_after=f.created_after,
        created_before=f.created_before,
        after=pagination.time_keyset(page.after),
        limit=page.fetch,
    )
    items, token = pagination.time_page(rows, page, "created_at", "user_id")
    return [auth_domain.user_of(row) for row in items], token


async def _details(user_id: int, *, conn: AsyncConnection) -> UserDetails:
    summary = await queries.session_summary(conn, user_id)
    plans = await queries.current_plans(conn, user_id, MAX_PLANS_SHOWN)
    return UserDetails(
        last_login_at=summary.last_login_at,
        active_sessions=int(summary.active_sessions or 0),
        plans=tuple(
            UserPlan(
                id=int(p.id),
                plan_id=int(p.plan_id),
                plan_name=p.plan_name,
                phone_number=p.phone_number or "",
                valid_from=p.valid_from,
                valid_to=p.valid_to,
                queued=p.status == "queued",
            )
            for p in plans
        ),
    )


async def get_user(user_id: int, *, conn: AsyncConnection) -> UserView:
    """A live customer with their last login, live sessions and current plans."""
    user = await _live(user_id, conn=conn)
    return UserView(user, await _details(user_id, conn=conn))


# --- block, unblock, sessions -------------------------------------------------------------


async def block(user_id: int, reason: str, *, conn: AsyncConnection) -> Ended:
    """Block a customer and end their sessions (idempotent: a blocked customer stays
    blocked; sessions opened since are ended again)."""
    why = required_reason(reason)
    user = await _live(user_id, conn=conn, lock=True)
    ended = await auth_domain.end_sessions(reason=BLOCKED_REASON, user_id=user_id, conn=conn)
    if user.status != "blocked":
        await auth_domain.set_user_status(user_id, "blocked", conn=conn)
    audit_change(
        "Users",
        "UPDATE",
        {
            "user_id": user_id,
            "status": "blocked",
            "previous_status": user.status,
            "reason": why,
            "sessions_ended": len(ended),
        },
    )
    return Ended(UserView(await _live(user_id, conn=conn)), tuple(ended))


async def unblock(user_id: int, reason: str, *, conn: AsyncConnection) -> UserView:
    """Let a blocked customer log in again (idempotent). Sessions ended by the block
    stay ended."""
    user = await _live(user_id, conn=conn, lock=True)
    if user.status != "active":
        await auth_domain.set_user_status(user_id, "active", conn=conn)
    audit_change(
        "Users",
        "UPDATE",
        {
            "user_id": user_id,
            "status": "active",
            "previous_status": user.status,
            "reason": reason.strip(),
        },
    )
    return UserView(await _live(user_id, conn=conn))


async def revoke_sessions(user_id: int, *, conn: AsyncConnection) -> list[uuid.UUID]:
    """End every active session of a live customer; the ids ended."""
    await _live(user_id, conn=conn, lock=True)
    ended = await auth_domain.end_sessions(reason=REVOKED_REASON, user_id=user_id, conn=conn)
    audit_change("Sessions", "UPDATE", {"user_id": user_id, "sessions_ended": len(ended)})
    return ended


# --- archive and erasure ------------------------------------------------------------------


async def _check_archivable(user: auth_domain.User, *, conn: AsyncConnection) -> None:
    """FAILED_PRECONDITION while money is left or moving: a balance (WALLET_NOT_EMPTY),
    a pending payment (PAYMENT_PENDING: a pending ledger row or a charge not yet
    recorded), an enabled AutoPay mandate (AUTOPAY_ACTIVE)."""
    meta = {"user_id": str(user.user_id)}
    if user.wallet_balance > 0:
        raise FailedPrecondition(
            "the wallet still holds money: refund or adjust it to zero first",
            reason="WALLET_NOT_EMPTY",
            metadata={**meta, "balance_minor": str(to_minor(user.wallet_balance))},
        )
    flight = await queries.money_in_flight(conn, user.user_id)
    pending = int(flight.pending_transactions) + int(flight.charging_payments)
    if pending:
        raise FailedPrecondition(
            "a payment of this user is still pending",
            reason="PAYMENT_PENDING",
            metadata={**meta, "pending": str(pending)},
        )
    if flight.enabled_autopays:
        raise FailedPrecondition(
            "an AutoPay mandate of this user is enabled: disable or delete it first",
            reason="AUTOPAY_ACTIVE",
            metadata={**meta, "autopays": str(flight.enabled_autopays)},
        )


async def _archive(user: auth_domain.User, *, conn: AsyncConnection) -> list[uuid.UUID]:
    await _check_archivable(user, conn=conn)
    ended = await auth_domain.end_sessions(reason=ARCHIVED_REASON, user_id=user.user_id, conn=conn)
    await auth_domain.archive_user(user.user_id, conn=conn)
    return ended


async def _archived_view(user_id: int, *, conn: AsyncConnection) -> UserView:
    archived = await auth_domain.archived_user(user_id, conn=conn)
    if archived is None:  # pragma: no cover - the caller just archived it
        raise _not_found(user_id)
    return UserView(
        archived.user,
        UserDetails(archived_at=archived.archived_at, erased=_is_erased(archived.user)),
    )


async def archive(user_id: int, reason: str, *, conn: AsyncConnection) -> Ended:
    """Move a live customer to UsersArchive and end their sessions."""
    why = required_reason(reason)
    user = await _live(user_id, conn=conn, lock=True)
    ended = await _archive(user, conn=conn)
    audit_change(
        "UsersArchive",
        "INSERT",
        {"user_id": user_id, "reason": why, "sessions_ended": len(ended)},
    )
    return Ended(await _archived_view(user_id, conn=conn), tuple(ended))


async def erase(user_id: int, reason: str, *, conn: AsyncConnection) -> Ended:
    """Erase a customer's personal data: archive them if they are live (same
    preconditions), then remove the personal fields of the archive row and delete
    sessions, contact codes, reset tokens and notifications. Ledger rows are kept.
    Idempotent. The audit event names the user by id only."""
    why = required_reason(reason)
    user = await auth_domain.user_by_id(user_id, conn=conn, lock=True)
    if user is None:
        raise _not_found(user_id)
    archived = await auth_domain.archived_user(user_id, conn=conn, lock=True)
    ended: list[uuid.UUID] = []
    if archived is None:
        ended = await _archive(user, conn=conn)
    already = archived is not None and _is_erased(archived.user)
    deleted = await auth_domain.erase_archived_user(user_id, conn=conn)
    deleted["notifications"] = await notifications_domain.erase_for_user(user_id, conn=conn)
    details = {
        "user_id": user_id,
        "erased": True,
        "archived_now": archived is None,
        "already_erased": already,
        "reason": why,
        "sessions_ended": len(ended),
        "deleted": deleted,
    }
    audit_change("UsersArchive", "UPDATE", details)
    return Ended(await _archived_view(user_id, conn=conn), tuple(ended), details)


def erased_elsewhere(done: Ended, **counts: int) -> None:
    """Add what the erasure deleted outside PostgreSQL (e.g. ``contact_forms``) to its
    audit event, in the same unit of work (the event is written at the commit)."""
    details = dict(done.audit)
    details["deleted"] = {**details.get("deleted", {}), **counts}
    audit_change("UsersArchive", "UPDATE", details)


async def contact_emails(user_id: int, *, conn: AsyncConnection) -> list[str]:
    """The customer's e-mail addresses (live row and archive row; none once erased):
    what links them to their contact-form submissions."""
    found: list[str] = []
    user = await auth_domain.user_by_id(user_id, conn=conn)
    if user is not None and user.email:
        found.append(user.email)
    archived = await auth_domain.archived_user(user_id, conn=conn)
    if archived is not None and archived.user.email:
        found.append(archived.user.email)
    return found


# --- export -------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Plain JSON values: money as decimal strings, times as RFC 3339 UTC, ids as text."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


async def export(
    user_id: int,
    reason: str,
    *,
    audit_events: list[dict[str, Any]],
    contact_forms: list[dict[str, Any]] | None = None,
    conn: AsyncConnection,
) -> dict[str, Any]:
    """Everything PostgreSQL holds about one customer (live, archived or erased), as
    JSON values, secrets left out; audited as a SECURITY event (outcome ok): personal
    data leaves the system. The MongoDB part is added by the flow."""
    why = required_reason(reason)
    rows = await queries.export_rows(conn, user_id)
    live = rows.pop("users")
    archive_rows = rows.pop("usersarchive")
    if not live:
        raise _not_found(user_id)
    profile = archive_rows[0] if archive_rows else live[0]
    state = profile["status"]
    if archive_rows:
        state = "erased" if _is_erased_row(profile) else "archived"
    document: dict[str, Any] = {
        "schema": EXPORT_SCHEMA,
        "generated_at": datetime.now(UTC),
        "user_id": user_id,
        "state": state,
        "profile": {k: v for k, v in profile.items() if not k.endswith("_verified_at")},
        "contacts": {
            "email": profile.get("email"),
            "email_verified_at": profile.get("email_verified_at"),
            "phone_number": profile.get("phone_number"),
            "phone_verified_at": profile.get("phone_verified_at"),
        },
        "wallet": {"balance": live[0]["wallet_balance"], "currency": "INR"},
        **rows,
        "contact_forms": contact_forms or [],
        "audit_events": audit_events,
    }
    audit_change(
        "Users",
        "SECURITY",
        {
            "user_id": user_id,
            "event": "personal_data_export",
            "reason": why,
            "sections": {
                **{name: len(items) for name, items in rows.items()},
                "contact_forms": len(contact_forms or []),
            },
        },
    )
    result: dict[str, Any] = jsonable(document)
    return result


def _is_erased_row(row: Mapping[str, Any]) -> bool:
    return row.get("email") is None and row.get("phone_number") is None and row.get("name") is None


async def audit_events_about(
    mongo_db: AsyncDatabase[dict[str, Any]], user_id: int
) -> list[dict[str, Any]]:
    """The AuditLog events by or about the user, newest first (at most
    MAX_EXPORTED_AUDIT_EVENTS), as JSON values."""
    events = await queries.audit_events(mongo_db, user_id, MAX_EXPORTED_AUDIT_EVENTS)
    result: list[dict[str, Any]] = jsonable(events)
    return result
