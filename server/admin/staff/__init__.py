"""Staff and access: admin accounts, roles, permissions and grants, service accounts
(AdminService's staff RPCs and the ``gencharge`` staff commands)."""
