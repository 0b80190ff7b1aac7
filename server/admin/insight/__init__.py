"""Insight for operators: the audit log search (ListAuditLogs, MongoDB ``AuditLog``)
and the dashboard figures (GetDashboardStats, PostgreSQL), AdminService RPCs."""
