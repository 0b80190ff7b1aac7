"""Operators' user actions as units of work: each opens its transaction (the change
and its audit event commit together) and, after the commit, drops the sessions it
ended from this process's session cache, so the customer's access tokens stop at once
here and within ``auth_cache_seconds`` on every other replica.

The data export is shared by AdminService.ExportUserData and ``gencharge export-user``.
Both the export and the erasure cover the customer's contact-form submissions (MongoDB
ContactForm, found by their e-mail addresses: the form needs no login).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from server.admin.users import domain
from server.auth.flows import SessionCache
from server.content import domain as content
from server.core.db import Database


async def block(
    db: Database, user_id: int, reason: str, *, sessions: SessionCache
) -> domain.UserView:
    async with db.transaction() as conn:
        done = await domain.block(user_id, reason, conn=conn)
    sessions.forget_sessions(done.sessions)
    return done.view


async def revoke_sessions(db: Database, user_id: int, *, sessions: SessionCache) -> int:
    async with db.transaction() as conn:
        ended = await domain.revoke_sessions(user_id, conn=conn)
    sessions.forget_sessions(ended)
    return len(ended)


async def archive(
    db: Database, user_id: int, reason: str, *, sessions: SessionCache
) -> domain.UserView:
    async with db.transaction() as conn:
        done = await domain.archive(user_id, reason, conn=conn)
    sessions.forget_sessions(done.sessions)
    return done.view


async def erase(
    db: Database,
    mongo_db: AsyncDatabase[dict[str, Any]],
    user_id: int,
    reason: str,
    *,
    sessions: SessionCache,
) -> domain.Ended:
    """Erase a customer: their personal data in PostgreSQL and their contact-form
    submissions. The submissions are deleted inside the unit of work, after every
    precondition passed: if MongoDB fails, nothing is erased and the call can simply be
    repeated (the addresses that find the submissions are still there)."""
    async with db.transaction() as conn:
        emails = await domain.contact_emails(user_id, conn=conn)
        done = await domain.erase(user_id, reason, conn=conn)
        forms = await content.erase_contact_forms_from(emails, mongo=mongo_db)
        domain.erased_elsewhere(done, contact_forms=forms)
    sessions.forget_sessions(done.sessions)
    return done


async def export(
    db: Database, mongo_db: AsyncDatabase[dict[str, Any]], user_id: int, reason: str
) -> dict[str, Any]:
    """The user's data export (JSON values). The audit events are read from MongoDB
    first, so the export's own audit event commits only with a complete document."""
    domain.required_reason(reason)
    events = await domain.audit_events_about(mongo_db, user_id)
    async with db.read_only() as conn:
        emails = await domain.contact_emails(user_id, conn=conn)
    forms = await content.contact_forms_from(emails, mongo=mongo_db)
    async with db.transaction() as conn:
        return await domain.export(
            user_id,
            reason,
            audit_events=events,
            contact_forms=[dataclasses.asdict(form) for form in forms],
            conn=conn,
        )


def export_bytes(document: dict[str, Any]) -> bytes:
    """The export as UTF-8 JSON (indented, keys in document order)."""
    return json.dumps(document, ensure_ascii=False, indent=2).encode()
