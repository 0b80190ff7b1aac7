"""The RBAC resources: every resource an access rule of the gRPC contract names.

A permission (DDS Permissions) is about one of these, or about a data resource that the
domains check inside RPCs; AdminService CreatePermission refuses any other name
(INVALID_ARGUMENT), and the reference data (server/ops/seed/reference.py) gives the
Admin role full access to each.
"""

from __future__ import annotations

from typing import Final

#: Every resource named by an access rule (``resource: "..."``) of the gRPC contract
#: (protos/gencharge/v1/*.proto, listed in access.proto). tests/ops/test_seed.py parses the
#: protos and fails when a resource is missing here, so the seed cannot fall behind.
CONTRACT_RESOURCES: Final[tuple[str, ...]] = (
    "Users",
    "Admins",
    "Roles",
    "Permissions",
    "Transactions",
    "Wallet",
    "Plans",
    "Offers",
    "Notifications",
    "Content",
    "ContactForm",
    "Reports",
    "AuditLog",
    "Backup",
    "Schedule",
    "ServiceAccounts",
)

#: The personal-data resource: read on it shows e-mail addresses, phone numbers and
#: client addresses unmasked where an RPC masks them for other roles (AdminService
#: ListAuditLogs). Admin holds it, Support does not.
PERSONAL_DATA: Final = "PersonalData"

#: Permission resources no access rule names: the domains check them inside RPCs.
DATA_RESOURCES: Final[tuple[str, ...]] = (PERSONAL_DATA,)

#: Every resource a Permissions row may name.
PERMISSION_RESOURCES: Final[tuple[str, ...]] = (*CONTRACT_RESOURCES, *DATA_RESOURCES)
