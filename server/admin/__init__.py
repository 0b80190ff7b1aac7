"""Administration: AdminService (users, admins, roles and permissions, refunds, reports;
not built yet: its RPCs answer UNIMPLEMENTED) will live here as servicer, convert,
domain, flows and queries. Today: flows.py, the operators' admin accounts (the
bootstrap admin at start, ``gencharge create-admin`` and ``reset-admin-mfa``), written
through the identity domain (server/auth), which owns the ``admins`` table."""
