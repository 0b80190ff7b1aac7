"""ContentService work across transactions: the throttled contact form.

SubmitContactForm is open to anyone, so every client address (server/core/peers.py:
the TCP peer, or the client a trusted proxy names; IPv6 by /64) may store at most
``contact_forms_per_peer`` submissions per ``contact_form_window_seconds``. The counter
is the brute-force throttle's (server/auth/throttle.py, action ``contact_form``, scope
``peer``): kept in PostgreSQL, so every process and replica shares it, and hashed, so
it holds no address. Each submission counts before it is stored and is refused if its
count reached the limit, so a burst of concurrent submissions cannot slip past the
check together; a blocked address is refused without counting until its block (one
window) ends, with RESOURCE_EXHAUSTED ``TOO_MANY_ATTEMPTS`` and ``retry_after_seconds``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from server.auth.throttle import PEER, Limit, Throttle, keys_for
from server.content import domain
from server.content.domain import ContactFormEntry, ContactFormIn
from server.content.queries import Mongo
from server.core.config import Settings
from server.core.db import Database
from server.core.peers import peer_ip

ACTION = "contact_form"


def contact_form_throttle(
    db: Database, settings: Settings, *, clock: Callable[[], datetime] | None = None
) -> Throttle:
    """The contact-form limit per client address. The throttle counts "failures" and
    trips on reaching its limit; the submission that trips it is refused, hence + 1."""
    window = settings.contact_form_window_seconds
    limit = Limit(
        max_failures=settings.contact_forms_per_peer + 1,
        window_seconds=window,
        block_seconds=window,
    )
    if clock is None:
        return Throttle(db, policy={PEER: limit})
    return Throttle(db, policy={PEER: limit}, clock=clock)


async def submit_contact_form(
    db: Database,
    mongo: Mongo,
    form: ContactFormIn,
    *,
    peer: str | None,
    throttle: Throttle,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ContactFormEntry:
    # The address (a peer that is no IP address, e.g. a unix socket, counts as itself).
    keys = keys_for(ACTION, account=None, peer=(peer_ip(peer) or peer) if peer else None)
    await throttle.check(keys)  # a blocked address: refused, not counted
    checked = domain.check_contact_form(form)
    await throttle.failure(keys)  # count this one ...
    await throttle.check(keys)  # ... and refuse it if it reached the limit
    async with db.transaction():  # the audit event, committed with the MongoDB write
        return await domain.submit_contact_form(checked, now(), mongo=mongo)
