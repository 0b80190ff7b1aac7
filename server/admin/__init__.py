"""Administration: admins, users, roles and permissions, refunds, reports."""
