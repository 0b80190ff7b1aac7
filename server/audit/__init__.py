"""Audit: events written to a PostgreSQL outbox, shipped to MongoDB ``AuditLog``.

- :mod:`server.audit.outbox`: :class:`~server.audit.outbox.AuditEvent`,
  :func:`~server.audit.outbox.redact`, :func:`~server.audit.outbox.record` (in the
  caller's transaction) and :func:`~server.audit.outbox.record_standalone` (its own
  transaction, for security events of denied or failed calls).
- :mod:`server.audit.relay`: :class:`~server.audit.relay.AuditRelay`, the background
  task that ships outbox batches to ``AuditLog`` (at least once, stored once).
- :mod:`server.audit.queries`: the SQL of the outbox.

This package module imports nothing on purpose: :mod:`server.core.db` imports
``server.audit.scope``, and importing the relay (PyMongo) or the outbox from here
would make every importer of :mod:`server.core.db` pay for it or risk an import cycle.
See docs/audit.md.
"""
