"""Administration: AdminService, by topic, each topic a sub-package with the usual parts
(servicer mixin, convert, flows, domain, queries), composed into one servicer in
server/rpc/services.py:

- ``users/``: customer accounts (list, get, block, archive, sessions, data export and
  erasure);
- ``staff/``: admins, roles, permissions and grants, service accounts;
- ``money/``: refunds and wallet adjustments with four-eyes approval;
- ``insight/``: the audit log search and the dashboard figures.

Reports (GenerateReport, ListReports, DownloadReport) live in server/reports. Beside
the topics, flows.py holds the operators' admin accounts at start (the bootstrap admin)
and ``gencharge reset-admin-mfa``."""
