"""Typed wrappers of every service, async and sync. Generated from protos/gencharge/v1 by tools/gen_pyclient.py. Do not edit.

``AsyncServices``/``SyncServices`` are the bundles AsyncClient and Client inherit:
``client.recharge`` is ``RechargeService`` (async) or ``RechargeServiceSync``.
Each RPC is an attribute named in snake_case; paginated ones also iterate
(``.items(request)``, ``.pages(request)``).
"""

from __future__ import annotations

from gencharge_client import _calls
from gencharge_client._runner import Runner
from gencharge_client._transport import Transport
from gencharge_client.v1 import admin_service_pb2 as admin_service_pb2
from gencharge_client.v1 import auth_service_pb2 as auth_service_pb2
from gencharge_client.v1 import backup_service_pb2 as backup_service_pb2
from gencharge_client.v1 import content_service_pb2 as content_service_pb2
from gencharge_client.v1 import identity_pb2 as identity_pb2
from gencharge_client.v1 import notification_service_pb2 as notification_service_pb2
from gencharge_client.v1 import plan_service_pb2 as plan_service_pb2
from gencharge_client.v1 import recharge_service_pb2 as recharge_service_pb2
from gencharge_client.v1 import transaction_pb2 as transaction_pb2
from gencharge_client.v1 import wallet_service_pb2 as wallet_service_pb2
from google.protobuf import empty_pb2 as google_protobuf_empty_pb2
from gencharge_client.v1.methods import METHODS


class AdminService:
    """AdminService: operator back office: users, admins, roles and permissions (RBAC),
    service accounts, refunds and wallet corrections, audit log, reports and dashboard.

    Every RPC needs a role permission (AUDIENCE_PERMISSION); callers without it get
    PERMISSION_DENIED, callers without a token UNAUTHENTICATED. Every mutation is
    written to the audit log.
    """

    def __init__(self, transport: Transport) -> None:
        self.list_users = _calls.PagedMethod[admin_service_pb2.ListUsersRequest, admin_service_pb2.ListUsersResponse, identity_pb2.User](transport, METHODS['/gencharge.v1.AdminService/ListUsers'])
        """Lists customers, newest first. Errors: INVALID_ARGUMENT, PERMISSION_DENIED."""
        self.get_user = _calls.UnaryMethod[admin_service_pb2.GetUserRequest, identity_pb2.User](transport, METHODS['/gencharge.v1.AdminService/GetUser'])
        """Returns one customer, with User.details (last login, active sessions, active and
        queued plans). Errors: NOT_FOUND (USER_NOT_FOUND; USER_ARCHIVED), PERMISSION_DENIED.
        """
        self.block_user = _calls.UnaryMethod[admin_service_pb2.BlockUserRequest, identity_pb2.User](transport, METHODS['/gencharge.v1.AdminService/BlockUser'])
        """Blocks a customer and ends their sessions (idempotent): refresh tokens stop at once,
        access tokens at once on the serving process and within GENCHARGE_AUTH_CACHE_SECONDS
        on the others. Errors: INVALID_ARGUMENT (missing reason), NOT_FOUND (USER_NOT_FOUND;
        USER_ARCHIVED), PERMISSION_DENIED.
        """
        self.unblock_user = _calls.UnaryMethod[admin_service_pb2.UnblockUserRequest, identity_pb2.User](transport, METHODS['/gencharge.v1.AdminService/UnblockUser'])
        """Unblocks a customer (idempotent). Errors: NOT_FOUND (USER_NOT_FOUND; USER_ARCHIVED),
        PERMISSION_DENIED.
        """
        self.archive_user = _calls.UnaryMethod[admin_service_pb2.ArchiveUserRequest, admin_service_pb2.ArchiveUserResponse](transport, METHODS['/gencharge.v1.AdminService/ArchiveUser'])
        """Moves a customer to UsersArchive and revokes their sessions. The ledger is kept.
        Errors: INVALID_ARGUMENT (missing reason), NOT_FOUND (USER_NOT_FOUND;
        USER_ARCHIVED), FAILED_PRECONDITION (WALLET_NOT_EMPTY; PAYMENT_PENDING;
        AUTOPAY_ACTIVE), PERMISSION_DENIED.
        """
        self.revoke_user_sessions = _calls.UnaryMethod[admin_service_pb2.RevokeUserSessionsRequest, admin_service_pb2.RevokeUserSessionsResponse](transport, METHODS['/gencharge.v1.AdminService/RevokeUserSessions'])
        """Revokes every session of a customer (forced logout).
        Errors: NOT_FOUND, PERMISSION_DENIED.
        """
        self.export_user_data = _calls.UnaryMethod[admin_service_pb2.ExportUserDataRequest, admin_service_pb2.ExportUserDataResponse](transport, METHODS['/gencharge.v1.AdminService/ExportUserData'])
        """Exports everything GenCharge holds about one customer (a data subject access
        request, DPDP / GDPR) as one JSON document: profile, contacts, sessions (metadata
        only), wallet, transactions, recharges, plans, autopay mandates, bill reminders,
        notifications, referral rewards and the audit events about them. Never a secret
        (password hash, token hashes, codes). Works for archived and erased customers too.
        Audited (a SECURITY event with outcome "ok": personal data left the system).
        Needs Users EDIT, not READ: a bulk disclosure of one person's data is an
        operator's action on the account, not browsing.
        Errors: INVALID_ARGUMENT (missing reason), NOT_FOUND, PERMISSION_DENIED,
        UNAVAILABLE (MongoDB down: the audit events cannot be read).
        """
        self.erase_user_data = _calls.UnaryMethod[admin_service_pb2.EraseUserDataRequest, admin_service_pb2.EraseUserDataResponse](transport, METHODS['/gencharge.v1.AdminService/EraseUserData'])
        """Erases a customer's personal data on request (DPDP / GDPR right to erasure): the
        customer is archived first (as ArchiveUser, with its preconditions) and the
        archived row loses name, e-mail, phone number and credentials; sessions,
        one-time codes and notifications are deleted. Ledger rows (transactions,
        recharges, referral rewards) and their amounts are kept, still pointing at the
        user id. Idempotent: erasing an erased customer answers the same. Audited without
        the erased data. Errors: INVALID_ARGUMENT (missing reason), NOT_FOUND,
        FAILED_PRECONDITION (as ArchiveUser), PERMISSION_DENIED.
        """
        self.create_admin = _calls.UnaryMethod[admin_service_pb2.CreateAdminRequest, identity_pb2.Admin](transport, METHODS['/gencharge.v1.AdminService/CreateAdmin'])
        """Creates an admin account. Errors: INVALID_ARGUMENT (weak password), NOT_FOUND
        (role), ALREADY_EXISTS (email or phone taken), PERMISSION_DENIED.
        """
        self.list_admins = _calls.PagedMethod[admin_service_pb2.ListAdminsRequest, admin_service_pb2.ListAdminsResponse, identity_pb2.Admin](transport, METHODS['/gencharge.v1.AdminService/ListAdmins'])
        """Lists admins. Errors: INVALID_ARGUMENT, PERMISSION_DENIED."""
        self.update_admin = _calls.UnaryMethod[admin_service_pb2.UpdateAdminRequest, identity_pb2.Admin](transport, METHODS['/gencharge.v1.AdminService/UpdateAdmin'])
        """Updates an admin (name, phone_number, status, role_id). Errors: INVALID_ARGUMENT,
        NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION (blocking or demoting yourself, or
        the last active admin), PERMISSION_DENIED.
        """
        self.list_roles = _calls.PagedMethod[admin_service_pb2.ListRolesRequest, admin_service_pb2.ListRolesResponse, admin_service_pb2.Role](transport, METHODS['/gencharge.v1.AdminService/ListRoles'])
        """Lists roles. Errors: INVALID_ARGUMENT, PERMISSION_DENIED."""
        self.create_role = _calls.UnaryMethod[admin_service_pb2.CreateRoleRequest, admin_service_pb2.Role](transport, METHODS['/gencharge.v1.AdminService/CreateRole'])
        """Creates a role. Errors: INVALID_ARGUMENT, ALREADY_EXISTS (name), PERMISSION_DENIED."""
        self.list_permissions = _calls.PagedMethod[admin_service_pb2.ListPermissionsRequest, admin_service_pb2.ListPermissionsResponse, admin_service_pb2.Permission](transport, METHODS['/gencharge.v1.AdminService/ListPermissions'])
        """Lists permissions, optionally only those granted to a role.
        Errors: INVALID_ARGUMENT, NOT_FOUND (role), PERMISSION_DENIED.
        """
        self.create_permission = _calls.UnaryMethod[admin_service_pb2.CreatePermissionRequest, admin_service_pb2.Permission](transport, METHODS['/gencharge.v1.AdminService/CreatePermission'])
        """Creates a permission (a resource with read/write/edit/delete flags).
        Errors: INVALID_ARGUMENT (unknown resource), PERMISSION_DENIED.
        """
        self.grant_permission = _calls.UnaryMethod[admin_service_pb2.GrantPermissionRequest, admin_service_pb2.RolePermission](transport, METHODS['/gencharge.v1.AdminService/GrantPermission'])
        """Grants a permission to a role (DDS RolePermissions). Takes effect on the holders'
        next call. Errors: NOT_FOUND (role or permission), ALREADY_EXISTS (already
        granted), PERMISSION_DENIED.
        """
        self.revoke_permission = _calls.UnaryMethod[admin_service_pb2.RevokePermissionRequest, google_protobuf_empty_pb2.Empty](transport, METHODS['/gencharge.v1.AdminService/RevokePermission'])
        """Revokes a permission from a role. Errors: NOT_FOUND (not granted),
        FAILED_PRECONDITION (would leave no admin able to manage roles),
        PERMISSION_DENIED.
        """
        self.create_service_account = _calls.UnaryMethod[admin_service_pb2.CreateServiceAccountRequest, admin_service_pb2.CreateServiceAccountResponse](transport, METHODS['/gencharge.v1.AdminService/CreateServiceAccount'])
        """Creates a service account and returns its client secret, shown only this once.
        Errors: INVALID_ARGUMENT, NOT_FOUND (role), ALREADY_EXISTS (name),
        PERMISSION_DENIED.
        """
        self.list_service_accounts = _calls.PagedMethod[admin_service_pb2.ListServiceAccountsRequest, admin_service_pb2.ListServiceAccountsResponse, identity_pb2.ServiceAccount](transport, METHODS['/gencharge.v1.AdminService/ListServiceAccounts'])
        """Lists service accounts. Errors: INVALID_ARGUMENT, PERMISSION_DENIED."""
        self.disable_service_account = _calls.UnaryMethod[admin_service_pb2.DisableServiceAccountRequest, identity_pb2.ServiceAccount](transport, METHODS['/gencharge.v1.AdminService/DisableServiceAccount'])
        """Disables a service account; its tokens stop working (idempotent).
        Errors: NOT_FOUND, PERMISSION_DENIED.
        """
        self.refund_transaction = _calls.UnaryMethod[admin_service_pb2.RefundTransactionRequest, admin_service_pb2.RefundTransactionResponse](transport, METHODS['/gencharge.v1.AdminService/RefundTransaction'])
        """Refunds a successful recharge or top-up, fully or partly, as a new ledger row
        (source REFUND) linked to the original, which is never changed. The refunds of one
        transaction never add up to more than it, also when several run at once.

        Where the money goes: a recharge paid from the wallet is credited back to the
        wallet; an externally paid recharge is refunded through the payment gateway to the
        card, UPI or bank account that paid (the refund row is PENDING until the gateway
        accepts the refund, then SUCCESS with the gateway's refund id as
        payment_transaction_id); a top-up is refunded through the gateway too, and takes its
        amount out of the wallet first: money already spent from the wallet cannot be
        refunded (FAILED_PRECONDITION INSUFFICIENT_FUNDS).

        The plan of a recharge: a refund that makes the recharge fully refunded ends its
        plan now (a queued plan never starts; an active one stops; plans queued behind it
        keep their dates); a partial refund keeps the plan. An offer's cashback and a
        referral reward stay (take them back with AdjustWallet if needed).

        Retrying with the same request_id returns the same refund; if the gateway could not
        be reached (UNAVAILABLE), the retry finishes the same refund (never a second one),
        and so does the server by itself once GENCHARGE_PAYMENT_RECOVERY_AFTER_SECONDS have
        passed (the refund-recovery job asks the gateway again under the same reference).
        Errors: INVALID_ARGUMENT (amount not positive, missing reason, request_id),
        NOT_FOUND (transaction), FAILED_PRECONDITION (NOT_REFUNDABLE: not a successful
        recharge or top-up; REFUND_EXCEEDS_REMAINING: amount above what is left to refund;
        INSUFFICIENT_FUNDS; REFUND_REFUSED: the gateway refused the refund, nothing was
        refunded), ALREADY_EXISTS (request_id reused with a different request),
        UNAVAILABLE (GATEWAY_UNAVAILABLE: retry with the same request_id),
        PERMISSION_DENIED.
        """
        self.adjust_wallet = _calls.UnaryMethod[admin_service_pb2.AdjustWalletRequest, transaction_pb2.Transaction](transport, METHODS['/gencharge.v1.AdminService/AdjustWallet'])
        """Credits or debits a customer's wallet by hand (source ADJUSTMENT), with a reason.
        An adjustment whose absolute amount is above the approval threshold
        (GENCHARGE_ADJUSTMENT_APPROVAL_THRESHOLD_MINOR) needs a second admin (four eyes):
        it is recorded as a PENDING transaction that moves nothing until another admin
        approves it (ApproveWalletAdjustment); at or below it the wallet moves at once
        (SUCCESS). The balance never goes negative.
        Errors: INVALID_ARGUMENT (zero amount, missing reason), NOT_FOUND (user),
        FAILED_PRECONDITION (debit larger than the balance: reason
        "INSUFFICIENT_FUNDS"), ALREADY_EXISTS (request_id reused), PERMISSION_DENIED.
        """
        self.approve_wallet_adjustment = _calls.UnaryMethod[admin_service_pb2.ApproveWalletAdjustmentRequest, admin_service_pb2.WalletAdjustment](transport, METHODS['/gencharge.v1.AdminService/ApproveWalletAdjustment'])
        """Approves a pending wallet adjustment: its transaction succeeds and the wallet moves,
        atomically, with the balance checked again. The approver must be another admin
        than the one who asked for it. Retrying with the same request_id returns the same
        answer. Errors: INVALID_ARGUMENT, NOT_FOUND (adjustment), FAILED_PRECONDITION
        (SAME_ADMIN: the requester cannot approve; ADJUSTMENT_NOT_PENDING: already approved
        or rejected; INSUFFICIENT_FUNDS: the debit no longer fits the balance, the
        adjustment stays pending), ALREADY_EXISTS (request_id reused), PERMISSION_DENIED.
        """
        self.reject_wallet_adjustment = _calls.UnaryMethod[admin_service_pb2.RejectWalletAdjustmentRequest, admin_service_pb2.WalletAdjustment](transport, METHODS['/gencharge.v1.AdminService/RejectWalletAdjustment'])
        """Rejects a pending wallet adjustment (its transaction fails; nothing moves), with a
        reason. Any admin allowed to edit wallets may reject, the requester included (a
        withdrawal). Retrying with the same request_id returns the same answer.
        Errors: INVALID_ARGUMENT (missing reason), NOT_FOUND, FAILED_PRECONDITION
        (ADJUSTMENT_NOT_PENDING), ALREADY_EXISTS (request_id reused), PERMISSION_DENIED.
        """
        self.list_wallet_adjustments = _calls.PagedMethod[admin_service_pb2.ListWalletAdjustmentsRequest, admin_service_pb2.ListWalletAdjustmentsResponse, admin_service_pb2.WalletAdjustment](transport, METHODS['/gencharge.v1.AdminService/ListWalletAdjustments'])
        """Lists wallet adjustments, newest first (filters: status, customer).
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED.
        """
        self.list_audit_logs = _calls.PagedMethod[admin_service_pb2.ListAuditLogsRequest, admin_service_pb2.ListAuditLogsResponse, admin_service_pb2.AuditLogEntry](transport, METHODS['/gencharge.v1.AdminService/ListAuditLogs'])
        """Searches the audit log (MongoDB AuditLog), newest first.
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED.
        Searches the audit log (MongoDB AuditLog), newest first, with keyset page tokens
        (stable while new events arrive). Callers whose role lacks read on the
        "PersonalData" resource see e-mail addresses and phone numbers in the details
        masked ("a***@example.com", "******7890") and no client address. Errors:
        INVALID_ARGUMENT (bad filter or page token, created_after not before
        created_before), PERMISSION_DENIED, UNAVAILABLE (reason AUDIT_LOG_UNAVAILABLE:
        MongoDB does not answer; the rest of AdminService needs only PostgreSQL).
        """
        self.generate_report = _calls.UnaryMethod[admin_service_pb2.GenerateReportRequest, admin_service_pb2.Report](transport, METHODS['/gencharge.v1.AdminService/GenerateReport'])
        """Generates a report (logged in MongoDB ReportsLogs) and returns where to download
        it. Errors: INVALID_ARGUMENT (unknown report type, bad parameters),
        FAILED_PRECONDITION (REPORT_TOO_LARGE_FOR_PDF: a PDF holds a bounded number of rows,
        20,000 by default; choose CSV or Excel), PERMISSION_DENIED, RESOURCE_EXHAUSTED
        (REPORTS_BUSY).
        """
        self.list_reports = _calls.PagedMethod[admin_service_pb2.ListReportsRequest, admin_service_pb2.ListReportsResponse, admin_service_pb2.Report](transport, METHODS['/gencharge.v1.AdminService/ListReports'])
        """Lists generated reports, newest first. Errors: INVALID_ARGUMENT,
        PERMISSION_DENIED.
        """
        self.download_report = _calls.ServerStreamMethod[admin_service_pb2.DownloadReportRequest, admin_service_pb2.ReportChunk](transport, METHODS['/gencharge.v1.AdminService/DownloadReport'])
        """Streams the file of a generated report in chunks, in order: the first chunk also
        carries the file's size, SHA-256 checksum, name and media type, so the client can
        verify what it reassembled. Errors: INVALID_ARGUMENT, NOT_FOUND (no such report, or
        its file is gone), PERMISSION_DENIED.
        """
        self.get_dashboard_stats = _calls.UnaryMethod[admin_service_pb2.GetDashboardStatsRequest, admin_service_pb2.DashboardStats](transport, METHODS['/gencharge.v1.AdminService/GetDashboardStats'])
        """Returns headline figures for the admin dashboard over a time range.
        Errors: INVALID_ARGUMENT (reason INVALID_RANGE: start_time not before end_time, or
        a range longer than 366 days), PERMISSION_DENIED.
        """


class AdminServiceSync:
    """AdminService (sync). AdminService: operator back office: users, admins, roles and permissions (RBAC), service accounts, refunds and wallet corrections, audit log, reports and dashboard."""

    def __init__(self, inner: AdminService, runner: Runner) -> None:
        self.list_users = _calls.sync(inner.list_users, runner)
        """Lists customers, newest first. Errors: INVALID_ARGUMENT, PERMISSION_DENIED."""
        self.get_user = _calls.sync(inner.get_user, runner)
        """Returns one customer, with User.details (last login, active sessions, active and
        queued plans). Errors: NOT_FOUND (USER_NOT_FOUND; USER_ARCHIVED), PERMISSION_DENIED.
        """
        self.block_user = _calls.sync(inner.block_user, runner)
        """Blocks a customer and ends their sessions (idempotent): refresh tokens stop at once,
        access tokens at once on the serving process and within GENCHARGE_AUTH_CACHE_SECONDS
        on the others. Errors: INVALID_ARGUMENT (missing reason), NOT_FOUND (USER_NOT_FOUND;
        USER_ARCHIVED), PERMISSION_DENIED.
        """
        self.unblock_user = _calls.sync(inner.unblock_user, runner)
        """Unblocks a customer (idempotent). Errors: NOT_FOUND (USER_NOT_FOUND; USER_ARCHIVED),
        PERMISSION_DENIED.
        """
        self.archive_user = _calls.sync(inner.archive_user, runner)
        """Moves a customer to UsersArchive and revokes their sessions. The ledger is kept.
        Errors: INVALID_ARGUMENT (missing reason), NOT_FOUND (USER_NOT_FOUND;
        USER_ARCHIVED), FAILED_PRECONDITION (WALLET_NOT_EMPTY; PAYMENT_PENDING;
        AUTOPAY_ACTIVE), PERMISSION_DENIED.
        """
        self.revoke_user_sessions = _calls.sync(inner.revoke_user_sessions, runner)
        """Revokes every session of a customer (forced logout).
        Errors: NOT_FOUND, PERMISSION_DENIED.
        """
        self.export_user_data = _calls.sync(inner.export_user_data, runner)
        """Exports everything GenCharge holds about one customer (a data subject access
        request, DPDP / GDPR) as one JSON document: profile, contacts, sessions (metadata
        only), wallet, transactions, recharges, plans, autopay mandates, bill reminders,
        notifications, referral rewards and the audit events about them. Never a secret
        (password hash, token hashes, codes). Works for archived and erased customers too.
        Audited (a SECURITY event with outcome "ok": personal data left the system).
        Needs Users EDIT, not READ: a bulk disclosure of one person's data is an
        operator's action on the account, not browsing.
        Errors: INVALID_ARGUMENT (missing reason), NOT_FOUND, PERMISSION_DENIED,
        UNAVAILABLE (MongoDB down: the audit events cannot be read).
        """
        self.erase_user_data = _calls.sync(inner.erase_user_data, runner)
        """Erases a customer's personal data on request (DPDP / GDPR right to erasure): the
        customer is archived first (as ArchiveUser, with its preconditions) and the
        archived row loses name, e-mail, phone number and credentials; sessions,
        one-time codes and notifications are deleted. Ledger rows (transactions,
        recharges, referral rewards) and their amounts are kept, still pointing at the
        user id. Idempotent: erasing an erased customer answers the same. Audited without
        the erased data. Errors: INVALID_ARGUMENT (missing reason), NOT_FOUND,
        FAILED_PRECONDITION (as ArchiveUser), PERMISSION_DENIED.
        """
        self.create_admin = _calls.sync(inner.create_admin, runner)
        """Creates an admin account. Errors: INVALID_ARGUMENT (weak password), NOT_FOUND
        (role), ALREADY_EXISTS (email or phone taken), PERMISSION_DENIED.
        """
        self.list_admins = _calls.sync(inner.list_admins, runner)
        """Lists admins. Errors: INVALID_ARGUMENT, PERMISSION_DENIED."""
        self.update_admin = _calls.sync(inner.update_admin, runner)
        """Updates an admin (name, phone_number, status, role_id). Errors: INVALID_ARGUMENT,
        NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION (blocking or demoting yourself, or
        the last active admin), PERMISSION_DENIED.
        """
        self.list_roles = _calls.sync(inner.list_roles, runner)
        """Lists roles. Errors: INVALID_ARGUMENT, PERMISSION_DENIED."""
        self.create_role = _calls.sync(inner.create_role, runner)
        """Creates a role. Errors: INVALID_ARGUMENT, ALREADY_EXISTS (name), PERMISSION_DENIED."""
        self.list_permissions = _calls.sync(inner.list_permissions, runner)
        """Lists permissions, optionally only those granted to a role.
        Errors: INVALID_ARGUMENT, NOT_FOUND (role), PERMISSION_DENIED.
        """
        self.create_permission = _calls.sync(inner.create_permission, runner)
        """Creates a permission (a resource with read/write/edit/delete flags).
        Errors: INVALID_ARGUMENT (unknown resource), PERMISSION_DENIED.
        """
        self.grant_permission = _calls.sync(inner.grant_permission, runner)
        """Grants a permission to a role (DDS RolePermissions). Takes effect on the holders'
        next call. Errors: NOT_FOUND (role or permission), ALREADY_EXISTS (already
        granted), PERMISSION_DENIED.
        """
        self.revoke_permission = _calls.sync(inner.revoke_permission, runner)
        """Revokes a permission from a role. Errors: NOT_FOUND (not granted),
        FAILED_PRECONDITION (would leave no admin able to manage roles),
        PERMISSION_DENIED.
        """
        self.create_service_account = _calls.sync(inner.create_service_account, runner)
        """Creates a service account and returns its client secret, shown only this once.
        Errors: INVALID_ARGUMENT, NOT_FOUND (role), ALREADY_EXISTS (name),
        PERMISSION_DENIED.
        """
        self.list_service_accounts = _calls.sync(inner.list_service_accounts, runner)
        """Lists service accounts. Errors: INVALID_ARGUMENT, PERMISSION_DENIED."""
        self.disable_service_account = _calls.sync(inner.disable_service_account, runner)
        """Disables a service account; its tokens stop working (idempotent).
        Errors: NOT_FOUND, PERMISSION_DENIED.
        """
        self.refund_transaction = _calls.sync(inner.refund_transaction, runner)
        """Refunds a successful recharge or top-up, fully or partly, as a new ledger row
        (source REFUND) linked to the original, which is never changed. The refunds of one
        transaction never add up to more than it, also when several run at once.

        Where the money goes: a recharge paid from the wallet is credited back to the
        wallet; an externally paid recharge is refunded through the payment gateway to the
        card, UPI or bank account that paid (the refund row is PENDING until the gateway
        accepts the refund, then SUCCESS with the gateway's refund id as
        payment_transaction_id); a top-up is refunded through the gateway too, and takes its
        amount out of the wallet first: money already spent from the wallet cannot be
        refunded (FAILED_PRECONDITION INSUFFICIENT_FUNDS).

        The plan of a recharge: a refund that makes the recharge fully refunded ends its
        plan now (a queued plan never starts; an active one stops; plans queued behind it
        keep their dates); a partial refund keeps the plan. An offer's cashback and a
        referral reward stay (take them back with AdjustWallet if needed).

        Retrying with the same request_id returns the same refund; if the gateway could not
        be reached (UNAVAILABLE), the retry finishes the same refund (never a second one),
        and so does the server by itself once GENCHARGE_PAYMENT_RECOVERY_AFTER_SECONDS have
        passed (the refund-recovery job asks the gateway again under the same reference).
        Errors: INVALID_ARGUMENT (amount not positive, missing reason, request_id),
        NOT_FOUND (transaction), FAILED_PRECONDITION (NOT_REFUNDABLE: not a successful
        recharge or top-up; REFUND_EXCEEDS_REMAINING: amount above what is left to refund;
        INSUFFICIENT_FUNDS; REFUND_REFUSED: the gateway refused the refund, nothing was
        refunded), ALREADY_EXISTS (request_id reused with a different request),
        UNAVAILABLE (GATEWAY_UNAVAILABLE: retry with the same request_id),
        PERMISSION_DENIED.
        """
        self.adjust_wallet = _calls.sync(inner.adjust_wallet, runner)
        """Credits or debits a customer's wallet by hand (source ADJUSTMENT), with a reason.
        An adjustment whose absolute amount is above the approval threshold
        (GENCHARGE_ADJUSTMENT_APPROVAL_THRESHOLD_MINOR) needs a second admin (four eyes):
        it is recorded as a PENDING transaction that moves nothing until another admin
        approves it (ApproveWalletAdjustment); at or below it the wallet moves at once
        (SUCCESS). The balance never goes negative.
        Errors: INVALID_ARGUMENT (zero amount, missing reason), NOT_FOUND (user),
        FAILED_PRECONDITION (debit larger than the balance: reason
        "INSUFFICIENT_FUNDS"), ALREADY_EXISTS (request_id reused), PERMISSION_DENIED.
        """
        self.approve_wallet_adjustment = _calls.sync(inner.approve_wallet_adjustment, runner)
        """Approves a pending wallet adjustment: its transaction succeeds and the wallet moves,
        atomically, with the balance checked again. The approver must be another admin
        than the one who asked for it. Retrying with the same request_id returns the same
        answer. Errors: INVALID_ARGUMENT, NOT_FOUND (adjustment), FAILED_PRECONDITION
        (SAME_ADMIN: the requester cannot approve; ADJUSTMENT_NOT_PENDING: already approved
        or rejected; INSUFFICIENT_FUNDS: the debit no longer fits the balance, the
        adjustment stays pending), ALREADY_EXISTS (request_id reused), PERMISSION_DENIED.
        """
        self.reject_wallet_adjustment = _calls.sync(inner.reject_wallet_adjustment, runner)
        """Rejects a pending wallet adjustment (its transaction fails; nothing moves), with a
        reason. Any admin allowed to edit wallets may reject, the requester included (a
        withdrawal). Retrying with the same request_id returns the same answer.
        Errors: INVALID_ARGUMENT (missing reason), NOT_FOUND, FAILED_PRECONDITION
        (ADJUSTMENT_NOT_PENDING), ALREADY_EXISTS (request_id reused), PERMISSION_DENIED.
        """
        self.list_wallet_adjustments = _calls.sync(inner.list_wallet_adjustments, runner)
        """Lists wallet adjustments, newest first (filters: status, customer).
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED.
        """
        self.list_audit_logs = _calls.sync(inner.list_audit_logs, runner)
        """Searches the audit log (MongoDB AuditLog), newest first.
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED.
        Searches the audit log (MongoDB AuditLog), newest first, with keyset page tokens
        (stable while new events arrive). Callers whose role lacks read on the
        "PersonalData" resource see e-mail addresses and phone numbers in the details
        masked ("a***@example.com", "******7890") and no client address. Errors:
        INVALID_ARGUMENT (bad filter or page token, created_after not before
        created_before), PERMISSION_DENIED, UNAVAILABLE (reason AUDIT_LOG_UNAVAILABLE:
        MongoDB does not answer; the rest of AdminService needs only PostgreSQL).
        """
        self.generate_report = _calls.sync(inner.generate_report, runner)
        """Generates a report (logged in MongoDB ReportsLogs) and returns where to download
        it. Errors: INVALID_ARGUMENT (unknown report type, bad parameters),
        FAILED_PRECONDITION (REPORT_TOO_LARGE_FOR_PDF: a PDF holds a bounded number of rows,
        20,000 by default; choose CSV or Excel), PERMISSION_DENIED, RESOURCE_EXHAUSTED
        (REPORTS_BUSY).
        """
        self.list_reports = _calls.sync(inner.list_reports, runner)
        """Lists generated reports, newest first. Errors: INVALID_ARGUMENT,
        PERMISSION_DENIED.
        """
        self.download_report = _calls.sync(inner.download_report, runner)
        """Streams the file of a generated report in chunks, in order: the first chunk also
        carries the file's size, SHA-256 checksum, name and media type, so the client can
        verify what it reassembled. Errors: INVALID_ARGUMENT, NOT_FOUND (no such report, or
        its file is gone), PERMISSION_DENIED.
        """
        self.get_dashboard_stats = _calls.sync(inner.get_dashboard_stats, runner)
        """Returns headline figures for the admin dashboard over a time range.
        Errors: INVALID_ARGUMENT (reason INVALID_RANGE: start_time not before end_time, or
        a range longer than 366 days), PERMISSION_DENIED.
        """


class AuthService:
    """AuthService: sign-up, login (password, phone OTP, admin TOTP MFA), token refresh,
    sessions, passwords, the caller's profile and contacts, the JWKS, and
    service-account tokens.

    Tokens: access tokens are short-lived JWTs (JWS alg "EdDSA" over Ed25519 keys, with
    `kid`; verify them with GetJwks) sent as `authorization: Bearer <token>` metadata. Refresh tokens are opaque,
    single use and rotated by RefreshToken; presenting an already-used refresh token
    revokes the whole session (token theft detection).

    Credential errors are deliberately vague: wrong email, wrong phone and wrong password
    all return UNAUTHENTICATED with ErrorInfo reason "INVALID_CREDENTIALS".

    Service accounts have no session: of the AUTHENTICATED RPCs here they may call only
    GetMe; the others refuse them (PERMISSION_DENIED, reason "SERVICE_NOT_ALLOWED").

    Contacts: an account's e-mail address and phone number start unverified. A contact
    is verified when a code sent to it comes back (SendContactCode + VerifyContact, or
    the code of a contact change). A customer's contact that was never verified cannot
    be used to log in by OTP or to reset the password: RequestOtp and
    RequestPasswordReset then answer as for an unknown contact and send nothing.
    Contacts change only through StartContactChange + ConfirmContactChange (recent
    proof of the account, then a code sent to the new contact), never through UpdateMe,
    so a stolen access token alone cannot move an account to the thief's phone.
    """

    def __init__(self, transport: Transport) -> None:
        self.register = _calls.UnaryMethod[auth_service_pb2.RegisterRequest, auth_service_pb2.RegisterResponse](transport, METHODS['/gencharge.v1.AuthService/Register'])
        """Creates a customer account and logs it in. Its e-mail address and phone number
        start unverified (User.email_verified, User.phone_verified): verify them with
        SendContactCode + VerifyContact before using them for OTP login or password reset.
        Refusals because the e-mail or phone is taken count against the client address
        and the identifier like failed logins do.
        Errors: INVALID_ARGUMENT (bad email/phone/weak password, unknown referral code),
        ALREADY_EXISTS (email or phone number taken), RESOURCE_EXHAUSTED
        (TOO_MANY_ATTEMPTS).
        """
        self.login = _calls.UnaryMethod[auth_service_pb2.LoginRequest, auth_service_pb2.LoginResponse](transport, METHODS['/gencharge.v1.AuthService/Login'])
        """Logs a user or admin in with email or phone number plus password. A user gets
        tokens. An admin always gets an MFA challenge to answer with VerifyMfa (DDS 10.4);
        on an admin's first login the challenge carries a TOTP enrolment.
        Errors: INVALID_ARGUMENT, UNAUTHENTICATED (INVALID_CREDENTIALS),
        PERMISSION_DENIED (ACCOUNT_BLOCKED), RESOURCE_EXHAUSTED (too many attempts).
        """
        self.verify_mfa = _calls.UnaryMethod[auth_service_pb2.VerifyMfaRequest, auth_service_pb2.AuthTokens](transport, METHODS['/gencharge.v1.AuthService/VerifyMfa'])
        """Completes an admin login with a TOTP code for the challenge returned by Login.
        Errors: INVALID_ARGUMENT, UNAUTHENTICATED (bad code, expired or used challenge),
        RESOURCE_EXHAUSTED (too many attempts: the challenge is burned).
        """
        self.request_otp = _calls.UnaryMethod[auth_service_pb2.RequestOtpRequest, auth_service_pb2.RequestOtpResponse](transport, METHODS['/gencharge.v1.AuthService/RequestOtp'])
        """Sends a one-time login code by SMS to a registered customer's verified phone
        number. Always succeeds for a well-formed number (does not reveal whether it is
        registered or verified: an unknown or unverified number gets no SMS).
        Errors: INVALID_ARGUMENT, RESOURCE_EXHAUSTED (resend too soon).
        """
        self.verify_otp = _calls.UnaryMethod[auth_service_pb2.VerifyOtpRequest, auth_service_pb2.AuthTokens](transport, METHODS['/gencharge.v1.AuthService/VerifyOtp'])
        """Logs a customer in with the code sent by RequestOtp.
        Errors: INVALID_ARGUMENT, UNAUTHENTICATED (wrong/expired code, unknown or
        unverified number),
        PERMISSION_DENIED (ACCOUNT_BLOCKED), RESOURCE_EXHAUSTED (too many attempts).
        """
        self.refresh_token = _calls.UnaryMethod[auth_service_pb2.RefreshTokenRequest, auth_service_pb2.AuthTokens](transport, METHODS['/gencharge.v1.AuthService/RefreshToken'])
        """Exchanges a refresh token for a new access token and a new refresh token
        (rotation). The old refresh token stops working.
        Errors: INVALID_ARGUMENT (empty token), UNAUTHENTICATED (unknown, expired, revoked
        or reused token: reason "INVALID_REFRESH_TOKEN", or "REFRESH_TOKEN_REUSED" when
        reuse revoked the session), PERMISSION_DENIED (ACCOUNT_BLOCKED: the session was
        ended by blocking the account; it stays ended if the account is unblocked).
        """
        self.logout = _calls.UnaryMethod[auth_service_pb2.LogoutRequest, google_protobuf_empty_pb2.Empty](transport, METHODS['/gencharge.v1.AuthService/Logout'])
        """Ends the caller's current session (or all of them). Access tokens of an ended
        session are refused from then on (UNAUTHENTICATED, reason "SESSION_ENDED"; other
        server replicas within seconds). Errors: UNAUTHENTICATED, PERMISSION_DENIED (service
        accounts have no session).
        """
        self.list_sessions = _calls.PagedMethod[auth_service_pb2.ListSessionsRequest, auth_service_pb2.ListSessionsResponse, auth_service_pb2.Session](transport, METHODS['/gencharge.v1.AuthService/ListSessions'])
        """Lists the caller's sessions, newest login first.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (bad page token), PERMISSION_DENIED
        (service accounts have no session).
        """
        self.revoke_session = _calls.UnaryMethod[auth_service_pb2.RevokeSessionRequest, google_protobuf_empty_pb2.Empty](transport, METHODS['/gencharge.v1.AuthService/RevokeSession'])
        """Revokes one of the caller's sessions (e.g. "log out that phone").
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (not a session ID), NOT_FOUND (no such
        session of the caller), PERMISSION_DENIED (service accounts have no session).
        """
        self.change_password = _calls.UnaryMethod[auth_service_pb2.ChangePasswordRequest, google_protobuf_empty_pb2.Empty](transport, METHODS['/gencharge.v1.AuthService/ChangePassword'])
        """Changes the caller's password after checking the current one, and ends every
        other session of the caller (this one stays logged in).
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (weak new password; wrong current
        password is a field violation on `current_password`, reason "INVALID_CREDENTIALS"),
        PERMISSION_DENIED (service accounts have no password here), RESOURCE_EXHAUSTED.
        """
        self.request_password_reset = _calls.UnaryMethod[auth_service_pb2.RequestPasswordResetRequest, google_protobuf_empty_pb2.Empty](transport, METHODS['/gencharge.v1.AuthService/RequestPasswordReset'])
        """Sends a single-use password reset token to the account's email or phone (users;
        admin passwords are reset by another admin), if that contact is verified. Always
        succeeds for well-formed input (no account enumeration: an unknown or unverified
        contact gets nothing).
        Errors: INVALID_ARGUMENT, RESOURCE_EXHAUSTED.
        """
        self.reset_password = _calls.UnaryMethod[auth_service_pb2.ResetPasswordRequest, google_protobuf_empty_pb2.Empty](transport, METHODS['/gencharge.v1.AuthService/ResetPassword'])
        """Sets a new password with a reset token and revokes all sessions of the account.
        Errors: INVALID_ARGUMENT (missing token, weak password), UNAUTHENTICATED
        (bad/expired/used token: reason "INVALID_RESET_TOKEN").
        """
        self.get_me = _calls.UnaryMethod[auth_service_pb2.GetMeRequest, identity_pb2.Principal](transport, METHODS['/gencharge.v1.AuthService/GetMe'])
        """Returns the caller's own account: user (with wallet balance), admin or service
        account (with its scopes; every service account may call GetMe, scopes or not).
        Errors: UNAUTHENTICATED.
        """
        self.update_me = _calls.UnaryMethod[auth_service_pb2.UpdateMeRequest, identity_pb2.Principal](transport, METHODS['/gencharge.v1.AuthService/UpdateMe'])
        """Updates the caller's own profile (users and admins): the name. The e-mail address
        and phone number change only with StartContactChange + ConfirmContactChange.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (bad value or mask path; "email" or
        "phone_number" in the mask is a field violation on `update_mask` with ErrorInfo
        reason "CONTACT_CHANGE_NEEDS_VERIFICATION"), PERMISSION_DENIED
        (SERVICE_NOT_ALLOWED: service accounts).
        """
        self.send_contact_code = _calls.UnaryMethod[auth_service_pb2.SendContactCodeRequest, auth_service_pb2.SendContactCodeResponse](transport, METHODS['/gencharge.v1.AuthService/SendContactCode'])
        """Sends a 6-digit code to one of the caller's own current contacts: the account's
        e-mail address (by e-mail) or phone number (by SMS). The code proves the caller
        holds that contact: give it to VerifyContact (the contact becomes verified) or to
        StartContactChange as `current_contact_code` (proof for changing a contact). It
        expires at `expires_at` (minutes), works once, dies after 5 wrong attempts, and a
        new code replaces the previous one.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (channel), FAILED_PRECONDITION
        (NO_SUCH_CONTACT: the account has no contact on that channel), PERMISSION_DENIED
        (SERVICE_NOT_ALLOWED: service accounts), RESOURCE_EXHAUSTED (OTP_RESEND_TOO_SOON: wait
        `resend_after`; TOO_MANY_ATTEMPTS), UNAVAILABLE (MESSAGE_DELIVERY_FAILED).
        """
        self.verify_contact = _calls.UnaryMethod[auth_service_pb2.VerifyContactRequest, identity_pb2.Principal](transport, METHODS['/gencharge.v1.AuthService/VerifyContact'])
        """Marks the caller's contact verified with the code SendContactCode sent to it, and
        returns the caller's account.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (malformed code; a wrong, used or
        expired code, or a contact that changed since the code was sent, is a field
        violation on `code` with ErrorInfo reason "INVALID_CODE"), PERMISSION_DENIED
        (SERVICE_NOT_ALLOWED), RESOURCE_EXHAUSTED (TOO_MANY_ATTEMPTS).
        """
        self.start_contact_change = _calls.UnaryMethod[auth_service_pb2.StartContactChangeRequest, auth_service_pb2.StartContactChangeResponse](transport, METHODS['/gencharge.v1.AuthService/StartContactChange'])
        """Starts changing the caller's e-mail address or phone number (users and admins).
        It needs recent proof that the caller is the account holder and not only holds an
        access token: the current password, or a code SendContactCode sent to one of the
        account's current contacts. Then a 6-digit code goes to the new contact; nothing
        changes until ConfirmContactChange returns it. A new change replaces a pending one.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (bad or unchanged new contact, no proof;
        a wrong current password is a field violation on `current_password` with reason
        "INVALID_CREDENTIALS", a wrong code one on `current_contact_code` with reason
        "INVALID_CODE"), ALREADY_EXISTS (CONTACT_TAKEN: another account has the new
        contact), PERMISSION_DENIED (SERVICE_NOT_ALLOWED), RESOURCE_EXHAUSTED
        (OTP_RESEND_TOO_SOON, TOO_MANY_ATTEMPTS), UNAVAILABLE (MESSAGE_DELIVERY_FAILED).
        """
        self.confirm_contact_change = _calls.UnaryMethod[auth_service_pb2.ConfirmContactChangeRequest, identity_pb2.Principal](transport, METHODS['/gencharge.v1.AuthService/ConfirmContactChange'])
        """Completes the change StartContactChange began, with the code sent to the new
        contact, and returns the caller's account. The account takes the new contact
        (verified); its previous e-mail address and phone number are told by message;
        every other session of the caller ends (their refresh tokens stop at once, their
        access tokens within the session-state cache time, seconds); login codes and
        password-reset tokens sent before the change stop working.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (malformed code; a wrong, used or
        expired code, or no pending change, is a field violation on `code` with reason
        "INVALID_CODE"), ALREADY_EXISTS (CONTACT_TAKEN: another account took the contact
        meanwhile), PERMISSION_DENIED (SERVICE_NOT_ALLOWED), RESOURCE_EXHAUSTED
        (TOO_MANY_ATTEMPTS).
        """
        self.get_jwks = _calls.UnaryMethod[auth_service_pb2.GetJwksRequest, auth_service_pb2.GetJwksResponse](transport, METHODS['/gencharge.v1.AuthService/GetJwks'])
        """Publishes the public keys that verify access tokens (RFC 7517 JWK set).
        Cache it and refetch when a token carries an unknown `kid`.
        """
        self.issue_service_token = _calls.UnaryMethod[auth_service_pb2.IssueServiceTokenRequest, auth_service_pb2.IssueServiceTokenResponse](transport, METHODS['/gencharge.v1.AuthService/IssueServiceToken'])
        """Client-credentials grant for service accounts: returns a short-lived access token
        (no refresh token; ask again before it expires).
        Errors: INVALID_ARGUMENT, UNAUTHENTICATED (bad credentials or disabled account),
        RESOURCE_EXHAUSTED.
        """


class AuthServiceSync:
    """AuthService (sync). AuthService: sign-up, login (password, phone OTP, admin TOTP MFA), token refresh, sessions, passwords, the caller's profile and contacts, the JWKS, and service-account tokens."""

    def __init__(self, inner: AuthService, runner: Runner) -> None:
        self.register = _calls.sync(inner.register, runner)
        """Creates a customer account and logs it in. Its e-mail address and phone number
        start unverified (User.email_verified, User.phone_verified): verify them with
        SendContactCode + VerifyContact before using them for OTP login or password reset.
        Refusals because the e-mail or phone is taken count against the client address
        and the identifier like failed logins do.
        Errors: INVALID_ARGUMENT (bad email/phone/weak password, unknown referral code),
        ALREADY_EXISTS (email or phone number taken), RESOURCE_EXHAUSTED
        (TOO_MANY_ATTEMPTS).
        """
        self.login = _calls.sync(inner.login, runner)
        """Logs a user or admin in with email or phone number plus password. A user gets
        tokens. An admin always gets an MFA challenge to answer with VerifyMfa (DDS 10.4);
        on an admin's first login the challenge carries a TOTP enrolment.
        Errors: INVALID_ARGUMENT, UNAUTHENTICATED (INVALID_CREDENTIALS),
        PERMISSION_DENIED (ACCOUNT_BLOCKED), RESOURCE_EXHAUSTED (too many attempts).
        """
        self.verify_mfa = _calls.sync(inner.verify_mfa, runner)
        """Completes an admin login with a TOTP code for the challenge returned by Login.
        Errors: INVALID_ARGUMENT, UNAUTHENTICATED (bad code, expired or used challenge),
        RESOURCE_EXHAUSTED (too many attempts: the challenge is burned).
        """
        self.request_otp = _calls.sync(inner.request_otp, runner)
        """Sends a one-time login code by SMS to a registered customer's verified phone
        number. Always succeeds for a well-formed number (does not reveal whether it is
        registered or verified: an unknown or unverified number gets no SMS).
        Errors: INVALID_ARGUMENT, RESOURCE_EXHAUSTED (resend too soon).
        """
        self.verify_otp = _calls.sync(inner.verify_otp, runner)
        """Logs a customer in with the code sent by RequestOtp.
        Errors: INVALID_ARGUMENT, UNAUTHENTICATED (wrong/expired code, unknown or
        unverified number),
        PERMISSION_DENIED (ACCOUNT_BLOCKED), RESOURCE_EXHAUSTED (too many attempts).
        """
        self.refresh_token = _calls.sync(inner.refresh_token, runner)
        """Exchanges a refresh token for a new access token and a new refresh token
        (rotation). The old refresh token stops working.
        Errors: INVALID_ARGUMENT (empty token), UNAUTHENTICATED (unknown, expired, revoked
        or reused token: reason "INVALID_REFRESH_TOKEN", or "REFRESH_TOKEN_REUSED" when
        reuse revoked the session), PERMISSION_DENIED (ACCOUNT_BLOCKED: the session was
        ended by blocking the account; it stays ended if the account is unblocked).
        """
        self.logout = _calls.sync(inner.logout, runner)
        """Ends the caller's current session (or all of them). Access tokens of an ended
        session are refused from then on (UNAUTHENTICATED, reason "SESSION_ENDED"; other
        server replicas within seconds). Errors: UNAUTHENTICATED, PERMISSION_DENIED (service
        accounts have no session).
        """
        self.list_sessions = _calls.sync(inner.list_sessions, runner)
        """Lists the caller's sessions, newest login first.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (bad page token), PERMISSION_DENIED
        (service accounts have no session).
        """
        self.revoke_session = _calls.sync(inner.revoke_session, runner)
        """Revokes one of the caller's sessions (e.g. "log out that phone").
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (not a session ID), NOT_FOUND (no such
        session of the caller), PERMISSION_DENIED (service accounts have no session).
        """
        self.change_password = _calls.sync(inner.change_password, runner)
        """Changes the caller's password after checking the current one, and ends every
        other session of the caller (this one stays logged in).
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (weak new password; wrong current
        password is a field violation on `current_password`, reason "INVALID_CREDENTIALS"),
        PERMISSION_DENIED (service accounts have no password here), RESOURCE_EXHAUSTED.
        """
        self.request_password_reset = _calls.sync(inner.request_password_reset, runner)
        """Sends a single-use password reset token to the account's email or phone (users;
        admin passwords are reset by another admin), if that contact is verified. Always
        succeeds for well-formed input (no account enumeration: an unknown or unverified
        contact gets nothing).
        Errors: INVALID_ARGUMENT, RESOURCE_EXHAUSTED.
        """
        self.reset_password = _calls.sync(inner.reset_password, runner)
        """Sets a new password with a reset token and revokes all sessions of the account.
        Errors: INVALID_ARGUMENT (missing token, weak password), UNAUTHENTICATED
        (bad/expired/used token: reason "INVALID_RESET_TOKEN").
        """
        self.get_me = _calls.sync(inner.get_me, runner)
        """Returns the caller's own account: user (with wallet balance), admin or service
        account (with its scopes; every service account may call GetMe, scopes or not).
        Errors: UNAUTHENTICATED.
        """
        self.update_me = _calls.sync(inner.update_me, runner)
        """Updates the caller's own profile (users and admins): the name. The e-mail address
        and phone number change only with StartContactChange + ConfirmContactChange.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (bad value or mask path; "email" or
        "phone_number" in the mask is a field violation on `update_mask` with ErrorInfo
        reason "CONTACT_CHANGE_NEEDS_VERIFICATION"), PERMISSION_DENIED
        (SERVICE_NOT_ALLOWED: service accounts).
        """
        self.send_contact_code = _calls.sync(inner.send_contact_code, runner)
        """Sends a 6-digit code to one of the caller's own current contacts: the account's
        e-mail address (by e-mail) or phone number (by SMS). The code proves the caller
        holds that contact: give it to VerifyContact (the contact becomes verified) or to
        StartContactChange as `current_contact_code` (proof for changing a contact). It
        expires at `expires_at` (minutes), works once, dies after 5 wrong attempts, and a
        new code replaces the previous one.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (channel), FAILED_PRECONDITION
        (NO_SUCH_CONTACT: the account has no contact on that channel), PERMISSION_DENIED
        (SERVICE_NOT_ALLOWED: service accounts), RESOURCE_EXHAUSTED (OTP_RESEND_TOO_SOON: wait
        `resend_after`; TOO_MANY_ATTEMPTS), UNAVAILABLE (MESSAGE_DELIVERY_FAILED).
        """
        self.verify_contact = _calls.sync(inner.verify_contact, runner)
        """Marks the caller's contact verified with the code SendContactCode sent to it, and
        returns the caller's account.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (malformed code; a wrong, used or
        expired code, or a contact that changed since the code was sent, is a field
        violation on `code` with ErrorInfo reason "INVALID_CODE"), PERMISSION_DENIED
        (SERVICE_NOT_ALLOWED), RESOURCE_EXHAUSTED (TOO_MANY_ATTEMPTS).
        """
        self.start_contact_change = _calls.sync(inner.start_contact_change, runner)
        """Starts changing the caller's e-mail address or phone number (users and admins).
        It needs recent proof that the caller is the account holder and not only holds an
        access token: the current password, or a code SendContactCode sent to one of the
        account's current contacts. Then a 6-digit code goes to the new contact; nothing
        changes until ConfirmContactChange returns it. A new change replaces a pending one.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (bad or unchanged new contact, no proof;
        a wrong current password is a field violation on `current_password` with reason
        "INVALID_CREDENTIALS", a wrong code one on `current_contact_code` with reason
        "INVALID_CODE"), ALREADY_EXISTS (CONTACT_TAKEN: another account has the new
        contact), PERMISSION_DENIED (SERVICE_NOT_ALLOWED), RESOURCE_EXHAUSTED
        (OTP_RESEND_TOO_SOON, TOO_MANY_ATTEMPTS), UNAVAILABLE (MESSAGE_DELIVERY_FAILED).
        """
        self.confirm_contact_change = _calls.sync(inner.confirm_contact_change, runner)
        """Completes the change StartContactChange began, with the code sent to the new
        contact, and returns the caller's account. The account takes the new contact
        (verified); its previous e-mail address and phone number are told by message;
        every other session of the caller ends (their refresh tokens stop at once, their
        access tokens within the session-state cache time, seconds); login codes and
        password-reset tokens sent before the change stop working.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (malformed code; a wrong, used or
        expired code, or no pending change, is a field violation on `code` with reason
        "INVALID_CODE"), ALREADY_EXISTS (CONTACT_TAKEN: another account took the contact
        meanwhile), PERMISSION_DENIED (SERVICE_NOT_ALLOWED), RESOURCE_EXHAUSTED
        (TOO_MANY_ATTEMPTS).
        """
        self.get_jwks = _calls.sync(inner.get_jwks, runner)
        """Publishes the public keys that verify access tokens (RFC 7517 JWK set).
        Cache it and refetch when a token carries an unknown `kid`.
        """
        self.issue_service_token = _calls.sync(inner.issue_service_token, runner)
        """Client-credentials grant for service accounts: returns a short-lived access token
        (no refresh token; ask again before it expires).
        Errors: INVALID_ARGUMENT, UNAUTHENTICATED (bad credentials or disabled account),
        RESOURCE_EXHAUSTED.
        """


class BackupService:
    """BackupService: database backups (DDS Backup), verification, restores, backup
    schedules (DDS Schedule) and the job log (MongoDB BackupRestoreLogs).

    CreateBackup and RestoreBackup stream progress. The job keeps running if the client
    disconnects; follow it with GetBackup or ListBackupRestoreLogs.
    """

    def __init__(self, transport: Transport) -> None:
        self.create_backup = _calls.ServerStreamMethod[backup_service_pb2.CreateBackupRequest, backup_service_pb2.BackupProgress](transport, METHODS['/gencharge.v1.BackupService/CreateBackup'])
        """Starts a backup and streams its progress; the last message has status COMPLETED
        (with the backup) or FAILED (with the error).
        Errors: INVALID_ARGUMENT (unknown tables), FAILED_PRECONDITION (another backup or
        restore is running), PERMISSION_DENIED.
        """
        self.list_backups = _calls.PagedMethod[backup_service_pb2.ListBackupsRequest, backup_service_pb2.ListBackupsResponse, backup_service_pb2.Backup](transport, METHODS['/gencharge.v1.BackupService/ListBackups'])
        """Lists backups, newest first (ties by backup_id, descending).
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED.
        """
        self.get_backup = _calls.UnaryMethod[backup_service_pb2.GetBackupRequest, backup_service_pb2.Backup](transport, METHODS['/gencharge.v1.BackupService/GetBackup'])
        """Returns one backup. Errors: NOT_FOUND BACKUP_NOT_FOUND, PERMISSION_DENIED."""
        self.verify_backup = _calls.UnaryMethod[backup_service_pb2.VerifyBackupRequest, backup_service_pb2.VerifyBackupResponse](transport, METHODS['/gencharge.v1.BackupService/VerifyBackup'])
        """Checks that a backup's files exist, match their checksums and can be read.
        Errors: NOT_FOUND, FAILED_PRECONDITION (backup failed or still running),
        PERMISSION_DENIED.
        """
        self.restore_backup = _calls.ServerStreamMethod[backup_service_pb2.RestoreBackupRequest, backup_service_pb2.BackupProgress](transport, METHODS['/gencharge.v1.BackupService/RestoreBackup'])
        """Restores a backup (replacing the current data of its tables) and streams progress;
        afterwards every session has ended (tokens issued before it answer UNAUTHENTICATED).
        Errors before anything changes: NOT_FOUND, FAILED_PRECONDITION (backup not SUCCESS
        or fails verification, another schema revision, no physical part for
        point_in_time, another job running), INVALID_ARGUMENT (tables not in the backup,
        point_in_time before the backup), PERMISSION_DENIED. A failure while restoring is
        the last message (FAILED, with the error; PostgreSQL is then as it was).
        """
        self.delete_backup = _calls.UnaryMethod[backup_service_pb2.DeleteBackupRequest, google_protobuf_empty_pb2.Empty](transport, METHODS['/gencharge.v1.BackupService/DeleteBackup'])
        """Deletes a backup and its stored files. Errors: NOT_FOUND, FAILED_PRECONDITION
        (in progress, named by a schedule, built on by an incremental backup, another job
        running), UNAVAILABLE (the storage cannot be reached), PERMISSION_DENIED.
        """
        self.create_schedule = _calls.UnaryMethod[backup_service_pb2.CreateScheduleRequest, backup_service_pb2.Schedule](transport, METHODS['/gencharge.v1.BackupService/CreateSchedule'])
        """Creates a backup schedule. next_run is the first time of cron_expression at or
        after the later of schedule.time and now. Replicas share schedules: each due run
        fires once, on one replica.
        Errors: INVALID_ARGUMENT (field violations on schedule.cron_expression,
        schedule.task_name, schedule.time, schedule.job, schedule.backup_id), NOT_FOUND
        BACKUP_NOT_FOUND (backup_id), ALREADY_EXISTS TASK_NAME_TAKEN, PERMISSION_DENIED.
        """
        self.list_schedules = _calls.PagedMethod[backup_service_pb2.ListSchedulesRequest, backup_service_pb2.ListSchedulesResponse, backup_service_pb2.Schedule](transport, METHODS['/gencharge.v1.BackupService/ListSchedules'])
        """Lists schedules by next_run (soonest first; ties by schedule_id; schedules without
        a next run last). Errors: INVALID_ARGUMENT, PERMISSION_DENIED.
        """
        self.update_schedule = _calls.UnaryMethod[backup_service_pb2.UpdateScheduleRequest, backup_service_pb2.Schedule](transport, METHODS['/gencharge.v1.BackupService/UpdateSchedule'])
        """Updates the fields of a schedule named in update_mask (e.g. "is_active" to pause
        or enable). next_run is recomputed when the mask names time, cron_expression or
        is_active. Errors: INVALID_ARGUMENT, NOT_FOUND SCHEDULE_NOT_FOUND or
        BACKUP_NOT_FOUND, ALREADY_EXISTS TASK_NAME_TAKEN, PERMISSION_DENIED.
        """
        self.delete_schedule = _calls.UnaryMethod[backup_service_pb2.DeleteScheduleRequest, google_protobuf_empty_pb2.Empty](transport, METHODS['/gencharge.v1.BackupService/DeleteSchedule'])
        """Deletes a schedule. Errors: NOT_FOUND SCHEDULE_NOT_FOUND, PERMISSION_DENIED."""
        self.list_backup_restore_logs = _calls.PagedMethod[backup_service_pb2.ListBackupRestoreLogsRequest, backup_service_pb2.ListBackupRestoreLogsResponse, backup_service_pb2.BackupRestoreLog](transport, METHODS['/gencharge.v1.BackupService/ListBackupRestoreLogs'])
        """Lists backup/restore job log entries, newest first (the DDS "recent backup restore
        activity" order). Entries expire after the configured log retention.
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED.
        """


class BackupServiceSync:
    """BackupService (sync). BackupService: database backups (DDS Backup), verification, restores, backup schedules (DDS Schedule) and the job log (MongoDB BackupRestoreLogs)."""

    def __init__(self, inner: BackupService, runner: Runner) -> None:
        self.create_backup = _calls.sync(inner.create_backup, runner)
        """Starts a backup and streams its progress; the last message has status COMPLETED
        (with the backup) or FAILED (with the error).
        Errors: INVALID_ARGUMENT (unknown tables), FAILED_PRECONDITION (another backup or
        restore is running), PERMISSION_DENIED.
        """
        self.list_backups = _calls.sync(inner.list_backups, runner)
        """Lists backups, newest first (ties by backup_id, descending).
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED.
        """
        self.get_backup = _calls.sync(inner.get_backup, runner)
        """Returns one backup. Errors: NOT_FOUND BACKUP_NOT_FOUND, PERMISSION_DENIED."""
        self.verify_backup = _calls.sync(inner.verify_backup, runner)
        """Checks that a backup's files exist, match their checksums and can be read.
        Errors: NOT_FOUND, FAILED_PRECONDITION (backup failed or still running),
        PERMISSION_DENIED.
        """
        self.restore_backup = _calls.sync(inner.restore_backup, runner)
        """Restores a backup (replacing the current data of its tables) and streams progress;
        afterwards every session has ended (tokens issued before it answer UNAUTHENTICATED).
        Errors before anything changes: NOT_FOUND, FAILED_PRECONDITION (backup not SUCCESS
        or fails verification, another schema revision, no physical part for
        point_in_time, another job running), INVALID_ARGUMENT (tables not in the backup,
        point_in_time before the backup), PERMISSION_DENIED. A failure while restoring is
        the last message (FAILED, with the error; PostgreSQL is then as it was).
        """
        self.delete_backup = _calls.sync(inner.delete_backup, runner)
        """Deletes a backup and its stored files. Errors: NOT_FOUND, FAILED_PRECONDITION
        (in progress, named by a schedule, built on by an incremental backup, another job
        running), UNAVAILABLE (the storage cannot be reached), PERMISSION_DENIED.
        """
        self.create_schedule = _calls.sync(inner.create_schedule, runner)
        """Creates a backup schedule. next_run is the first time of cron_expression at or
        after the later of schedule.time and now. Replicas share schedules: each due run
        fires once, on one replica.
        Errors: INVALID_ARGUMENT (field violations on schedule.cron_expression,
        schedule.task_name, schedule.time, schedule.job, schedule.backup_id), NOT_FOUND
        BACKUP_NOT_FOUND (backup_id), ALREADY_EXISTS TASK_NAME_TAKEN, PERMISSION_DENIED.
        """
        self.list_schedules = _calls.sync(inner.list_schedules, runner)
        """Lists schedules by next_run (soonest first; ties by schedule_id; schedules without
        a next run last). Errors: INVALID_ARGUMENT, PERMISSION_DENIED.
        """
        self.update_schedule = _calls.sync(inner.update_schedule, runner)
        """Updates the fields of a schedule named in update_mask (e.g. "is_active" to pause
        or enable). next_run is recomputed when the mask names time, cron_expression or
        is_active. Errors: INVALID_ARGUMENT, NOT_FOUND SCHEDULE_NOT_FOUND or
        BACKUP_NOT_FOUND, ALREADY_EXISTS TASK_NAME_TAKEN, PERMISSION_DENIED.
        """
        self.delete_schedule = _calls.sync(inner.delete_schedule, runner)
        """Deletes a schedule. Errors: NOT_FOUND SCHEDULE_NOT_FOUND, PERMISSION_DENIED."""
        self.list_backup_restore_logs = _calls.sync(inner.list_backup_restore_logs, runner)
        """Lists backup/restore job log entries, newest first (the DDS "recent backup restore
        activity" order). Entries expire after the configured log retention.
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED.
        """


class ContentService:
    """ContentService: static and dynamic content (FAQs, guides, policies; MongoDB Content)
    and the public contact form (MongoDB ContactForm).
    """

    def __init__(self, transport: Transport) -> None:
        self.list_content = _calls.PagedMethod[content_service_pb2.ListContentRequest, content_service_pb2.ListContentResponse, content_service_pb2.Content](transport, METHODS['/gencharge.v1.ContentService/ListContent'])
        """Lists content, most recently updated first. Errors: INVALID_ARGUMENT."""
        self.get_content = _calls.UnaryMethod[content_service_pb2.GetContentRequest, content_service_pb2.Content](transport, METHODS['/gencharge.v1.ContentService/GetContent'])
        """Returns one content item. Errors: NOT_FOUND.
        Served from a per-process cache: a change made through another server process
        shows within GENCHARGE_CONTENT_CACHE_SECONDS (see docs/api.md).
        """
        self.submit_contact_form = _calls.UnaryMethod[content_service_pb2.SubmitContactFormRequest, content_service_pb2.ContactForm](transport, METHODS['/gencharge.v1.ContentService/SubmitContactForm'])
        """Stores a contact form submission (status CONTACT_FORM_STATUS_NEW). Errors:
        INVALID_ARGUMENT (missing name, bad email, empty or over-long description,
        control characters), RESOURCE_EXHAUSTED (too many submissions from one client
        address; ErrorInfo reason TOO_MANY_ATTEMPTS, metadata retry_after_seconds).
        """
        self.create_content = _calls.UnaryMethod[content_service_pb2.CreateContentRequest, content_service_pb2.Content](transport, METHODS['/gencharge.v1.ContentService/CreateContent'])
        """Creates a content item. Errors: INVALID_ARGUMENT, NOT_FOUND (content type),
        PERMISSION_DENIED.
        """
        self.update_content = _calls.UnaryMethod[content_service_pb2.UpdateContentRequest, content_service_pb2.Content](transport, METHODS['/gencharge.v1.ContentService/UpdateContent'])
        """Updates the fields of a content item named in update_mask.
        Errors: INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED.
        """
        self.delete_content = _calls.UnaryMethod[content_service_pb2.DeleteContentRequest, google_protobuf_empty_pb2.Empty](transport, METHODS['/gencharge.v1.ContentService/DeleteContent'])
        """Deletes a content item. Errors: NOT_FOUND, PERMISSION_DENIED."""
        self.list_contact_forms = _calls.PagedMethod[content_service_pb2.ListContactFormsRequest, content_service_pb2.ListContactFormsResponse, content_service_pb2.ContactForm](transport, METHODS['/gencharge.v1.ContentService/ListContactForms'])
        """Lists contact form submissions, newest first, optionally of one status.
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED.
        """
        self.update_contact_form = _calls.UnaryMethod[content_service_pb2.UpdateContactFormRequest, content_service_pb2.ContactForm](transport, METHODS['/gencharge.v1.ContentService/UpdateContactForm'])
        """Updates the fields of a contact form submission named in update_mask: "status"
        (any status to any other, e.g. new -> in progress -> resolved; the same status
        again changes nothing). Errors: INVALID_ARGUMENT (mask, unknown or unset status,
        malformed id), NOT_FOUND, PERMISSION_DENIED.
        """


class ContentServiceSync:
    """ContentService (sync). ContentService: static and dynamic content (FAQs, guides, policies; MongoDB Content) and the public contact form (MongoDB ContactForm)."""

    def __init__(self, inner: ContentService, runner: Runner) -> None:
        self.list_content = _calls.sync(inner.list_content, runner)
        """Lists content, most recently updated first. Errors: INVALID_ARGUMENT."""
        self.get_content = _calls.sync(inner.get_content, runner)
        """Returns one content item. Errors: NOT_FOUND.
        Served from a per-process cache: a change made through another server process
        shows within GENCHARGE_CONTENT_CACHE_SECONDS (see docs/api.md).
        """
        self.submit_contact_form = _calls.sync(inner.submit_contact_form, runner)
        """Stores a contact form submission (status CONTACT_FORM_STATUS_NEW). Errors:
        INVALID_ARGUMENT (missing name, bad email, empty or over-long description,
        control characters), RESOURCE_EXHAUSTED (too many submissions from one client
        address; ErrorInfo reason TOO_MANY_ATTEMPTS, metadata retry_after_seconds).
        """
        self.create_content = _calls.sync(inner.create_content, runner)
        """Creates a content item. Errors: INVALID_ARGUMENT, NOT_FOUND (content type),
        PERMISSION_DENIED.
        """
        self.update_content = _calls.sync(inner.update_content, runner)
        """Updates the fields of a content item named in update_mask.
        Errors: INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED.
        """
        self.delete_content = _calls.sync(inner.delete_content, runner)
        """Deletes a content item. Errors: NOT_FOUND, PERMISSION_DENIED."""
        self.list_contact_forms = _calls.sync(inner.list_contact_forms, runner)
        """Lists contact form submissions, newest first, optionally of one status.
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED.
        """
        self.update_contact_form = _calls.sync(inner.update_contact_form, runner)
        """Updates the fields of a contact form submission named in update_mask: "status"
        (any status to any other, e.g. new -> in progress -> resolved; the same status
        again changes nothing). Errors: INVALID_ARGUMENT (mask, unknown or unset status,
        malformed id), NOT_FOUND, PERMISSION_DENIED.
        """


class NotificationService:
    """NotificationService: the caller's in-app notifications and admin broadcasts. Service
    accounts may not call it (PERMISSION_DENIED, reason "SERVICE_NOT_ALLOWED").
    """

    def __init__(self, transport: Transport) -> None:
        self.list_notifications = _calls.PagedMethod[notification_service_pb2.ListNotificationsRequest, notification_service_pb2.ListNotificationsResponse, notification_service_pb2.Notification](transport, METHODS['/gencharge.v1.NotificationService/ListNotifications'])
        """Lists the caller's notifications, newest first.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (bad page token), PERMISSION_DENIED
        (USER_ONLY: only customers have notifications).
        """
        self.mark_notification_viewed = _calls.UnaryMethod[notification_service_pb2.MarkNotificationViewedRequest, notification_service_pb2.Notification](transport, METHODS['/gencharge.v1.NotificationService/MarkNotificationViewed'])
        """Marks one of the caller's notifications as viewed (idempotent).
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (notification_id not positive), NOT_FOUND
        (missing or not the caller's), PERMISSION_DENIED (USER_ONLY).
        """
        self.send_notification = _calls.UnaryMethod[notification_service_pb2.SendNotificationRequest, notification_service_pb2.SendNotificationResponse](transport, METHODS['/gencharge.v1.NotificationService/SendNotification'])
        """Sends an admin notification to listed users or to every active user of a recipient
        type. Errors: INVALID_ARGUMENT (missing or too long description, missing type or
        recipient type, bad request_id, too many recipient_ids, recipient_ids missing for a
        recipient type that is not a group of users), NOT_FOUND (type, recipient type or a
        recipient), ALREADY_EXISTS (request_id reused with a different request),
        PERMISSION_DENIED.
        """
        self.list_notification_types = _calls.UnaryMethod[notification_service_pb2.ListNotificationTypesRequest, notification_service_pb2.ListNotificationTypesResponse](transport, METHODS['/gencharge.v1.NotificationService/ListNotificationTypes'])
        """Lists notification types (DDS NotificationTypes) and recipient types (DDS
        NotificationRecipientTypes). Errors: UNAUTHENTICATED.
        """


class NotificationServiceSync:
    """NotificationService (sync). NotificationService: the caller's in-app notifications and admin broadcasts. Service accounts may not call it (PERMISSION_DENIED, reason "SERVICE_NOT_ALLOWED")."""

    def __init__(self, inner: NotificationService, runner: Runner) -> None:
        self.list_notifications = _calls.sync(inner.list_notifications, runner)
        """Lists the caller's notifications, newest first.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (bad page token), PERMISSION_DENIED
        (USER_ONLY: only customers have notifications).
        """
        self.mark_notification_viewed = _calls.sync(inner.mark_notification_viewed, runner)
        """Marks one of the caller's notifications as viewed (idempotent).
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (notification_id not positive), NOT_FOUND
        (missing or not the caller's), PERMISSION_DENIED (USER_ONLY).
        """
        self.send_notification = _calls.sync(inner.send_notification, runner)
        """Sends an admin notification to listed users or to every active user of a recipient
        type. Errors: INVALID_ARGUMENT (missing or too long description, missing type or
        recipient type, bad request_id, too many recipient_ids, recipient_ids missing for a
        recipient type that is not a group of users), NOT_FOUND (type, recipient type or a
        recipient), ALREADY_EXISTS (request_id reused with a different request),
        PERMISSION_DENIED.
        """
        self.list_notification_types = _calls.sync(inner.list_notification_types, runner)
        """Lists notification types (DDS NotificationTypes) and recipient types (DDS
        NotificationRecipientTypes). Errors: UNAUTHENTICATED.
        """


class PlanService:
    """PlanService: the public catalogue of plans, plan groups, offers and offer types,
    and its administration.

    Reads are public. ListPlans and ListOffers show ACTIVE plans and offers unless the
    request asks for INACTIVE (withdrawn) ones; GetPlan and GetOffer return either, so
    the plan and offer named by an earlier recharge stay readable.
    """

    def __init__(self, transport: Transport) -> None:
        self.list_plans = _calls.PagedMethod[plan_service_pb2.ListPlansRequest, plan_service_pb2.ListPlansResponse, plan_service_pb2.Plan](transport, METHODS['/gencharge.v1.PlanService/ListPlans'])
        """Lists plans, most popular first, then by price (cheapest first), then by plan_id,
        on every page. Filters combine with AND.
        Errors: INVALID_ARGUMENT (bad page token or filter).
        """
        self.get_plan = _calls.UnaryMethod[plan_service_pb2.GetPlanRequest, plan_service_pb2.Plan](transport, METHODS['/gencharge.v1.PlanService/GetPlan'])
        """Returns one plan, on sale or withdrawn (see `status`).
        Errors: INVALID_ARGUMENT (plan_id not positive), NOT_FOUND.
        """
        self.list_plan_groups = _calls.PagedMethod[plan_service_pb2.ListPlanGroupsRequest, plan_service_pb2.ListPlanGroupsResponse, plan_service_pb2.PlanGroup](transport, METHODS['/gencharge.v1.PlanService/ListPlanGroups'])
        """Lists plan groups (DDS PlanGroups: talktime, unlimited, roaming...), by name.
        Errors: INVALID_ARGUMENT (bad page token).
        """
        self.list_offers = _calls.PagedMethod[plan_service_pb2.ListOffersRequest, plan_service_pb2.ListOffersResponse, plan_service_pb2.Offer](transport, METHODS['/gencharge.v1.PlanService/ListOffers'])
        """Lists offers, newest first (by created_at, then offer_id). Filters combine with
        AND. Errors: INVALID_ARGUMENT (bad page token or filter).
        """
        self.get_offer = _calls.UnaryMethod[plan_service_pb2.GetOfferRequest, plan_service_pb2.Offer](transport, METHODS['/gencharge.v1.PlanService/GetOffer'])
        """Returns one offer, active or withdrawn (see `status`).
        Errors: INVALID_ARGUMENT (offer_id not positive), NOT_FOUND.
        """
        self.list_offer_types = _calls.PagedMethod[plan_service_pb2.ListOfferTypesRequest, plan_service_pb2.ListOfferTypesResponse, plan_service_pb2.OfferType](transport, METHODS['/gencharge.v1.PlanService/ListOfferTypes'])
        """Lists offer types (DDS OfferTypes: cashback, bonus_data, festive_special...), by
        name. Errors: INVALID_ARGUMENT (bad page token).
        """
        self.create_plan = _calls.UnaryMethod[plan_service_pb2.CreatePlanRequest, plan_service_pb2.Plan](transport, METHODS['/gencharge.v1.PlanService/CreatePlan'])
        """Creates a plan. Errors: INVALID_ARGUMENT (missing name, price not positive,
        validity_days < 1, inconsistent benefits, unknown group_id, invalid criteria),
        PERMISSION_DENIED.
        """
        self.update_plan = _calls.UnaryMethod[plan_service_pb2.UpdatePlanRequest, plan_service_pb2.Plan](transport, METHODS['/gencharge.v1.PlanService/UpdatePlan'])
        """Updates the fields of a plan named in update_mask (e.g. "status" to retire it).
        Already bought plans keep the terms they were bought with.
        Errors: INVALID_ARGUMENT (bad value or mask path), NOT_FOUND, PERMISSION_DENIED.
        """
        self.delete_plan = _calls.UnaryMethod[plan_service_pb2.DeletePlanRequest, google_protobuf_empty_pb2.Empty](transport, METHODS['/gencharge.v1.PlanService/DeletePlan'])
        """Withdraws a plan: its status becomes INACTIVE. Plans are never hard-deleted
        (transactions and active plans refer to them); withdrawn plans stay readable with
        GetPlan. Idempotent. Errors: INVALID_ARGUMENT (plan_id not positive), NOT_FOUND,
        PERMISSION_DENIED.
        """
        self.create_offer = _calls.UnaryMethod[plan_service_pb2.CreateOfferRequest, plan_service_pb2.Offer](transport, METHODS['/gencharge.v1.PlanService/CreateOffer'])
        """Creates an offer. Errors: INVALID_ARGUMENT (benefit inconsistent with its kind,
        percent above 100%, unknown offer_type_id, invalid criteria), PERMISSION_DENIED.
        """
        self.update_offer = _calls.UnaryMethod[plan_service_pb2.UpdateOfferRequest, plan_service_pb2.Offer](transport, METHODS['/gencharge.v1.PlanService/UpdateOffer'])
        """Updates the fields of an offer named in update_mask.
        Errors: INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED.
        """
        self.delete_offer = _calls.UnaryMethod[plan_service_pb2.DeleteOfferRequest, google_protobuf_empty_pb2.Empty](transport, METHODS['/gencharge.v1.PlanService/DeleteOffer'])
        """Withdraws an offer: its status becomes INACTIVE (offers are never hard-deleted).
        Idempotent. Errors: INVALID_ARGUMENT (offer_id not positive), NOT_FOUND,
        PERMISSION_DENIED.
        """
        self.create_plan_group = _calls.UnaryMethod[plan_service_pb2.CreatePlanGroupRequest, plan_service_pb2.PlanGroup](transport, METHODS['/gencharge.v1.PlanService/CreatePlanGroup'])
        """Creates a plan group. Errors: INVALID_ARGUMENT, ALREADY_EXISTS (group_name taken),
        PERMISSION_DENIED.
        """
        self.create_offer_type = _calls.UnaryMethod[plan_service_pb2.CreateOfferTypeRequest, plan_service_pb2.OfferType](transport, METHODS['/gencharge.v1.PlanService/CreateOfferType'])
        """Creates an offer type. Errors: INVALID_ARGUMENT, ALREADY_EXISTS (offer_type_name
        taken), PERMISSION_DENIED.
        """


class PlanServiceSync:
    """PlanService (sync). PlanService: the public catalogue of plans, plan groups, offers and offer types, and its administration."""

    def __init__(self, inner: PlanService, runner: Runner) -> None:
        self.list_plans = _calls.sync(inner.list_plans, runner)
        """Lists plans, most popular first, then by price (cheapest first), then by plan_id,
        on every page. Filters combine with AND.
        Errors: INVALID_ARGUMENT (bad page token or filter).
        """
        self.get_plan = _calls.sync(inner.get_plan, runner)
        """Returns one plan, on sale or withdrawn (see `status`).
        Errors: INVALID_ARGUMENT (plan_id not positive), NOT_FOUND.
        """
        self.list_plan_groups = _calls.sync(inner.list_plan_groups, runner)
        """Lists plan groups (DDS PlanGroups: talktime, unlimited, roaming...), by name.
        Errors: INVALID_ARGUMENT (bad page token).
        """
        self.list_offers = _calls.sync(inner.list_offers, runner)
        """Lists offers, newest first (by created_at, then offer_id). Filters combine with
        AND. Errors: INVALID_ARGUMENT (bad page token or filter).
        """
        self.get_offer = _calls.sync(inner.get_offer, runner)
        """Returns one offer, active or withdrawn (see `status`).
        Errors: INVALID_ARGUMENT (offer_id not positive), NOT_FOUND.
        """
        self.list_offer_types = _calls.sync(inner.list_offer_types, runner)
        """Lists offer types (DDS OfferTypes: cashback, bonus_data, festive_special...), by
        name. Errors: INVALID_ARGUMENT (bad page token).
        """
        self.create_plan = _calls.sync(inner.create_plan, runner)
        """Creates a plan. Errors: INVALID_ARGUMENT (missing name, price not positive,
        validity_days < 1, inconsistent benefits, unknown group_id, invalid criteria),
        PERMISSION_DENIED.
        """
        self.update_plan = _calls.sync(inner.update_plan, runner)
        """Updates the fields of a plan named in update_mask (e.g. "status" to retire it).
        Already bought plans keep the terms they were bought with.
        Errors: INVALID_ARGUMENT (bad value or mask path), NOT_FOUND, PERMISSION_DENIED.
        """
        self.delete_plan = _calls.sync(inner.delete_plan, runner)
        """Withdraws a plan: its status becomes INACTIVE. Plans are never hard-deleted
        (transactions and active plans refer to them); withdrawn plans stay readable with
        GetPlan. Idempotent. Errors: INVALID_ARGUMENT (plan_id not positive), NOT_FOUND,
        PERMISSION_DENIED.
        """
        self.create_offer = _calls.sync(inner.create_offer, runner)
        """Creates an offer. Errors: INVALID_ARGUMENT (benefit inconsistent with its kind,
        percent above 100%, unknown offer_type_id, invalid criteria), PERMISSION_DENIED.
        """
        self.update_offer = _calls.sync(inner.update_offer, runner)
        """Updates the fields of an offer named in update_mask.
        Errors: INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED.
        """
        self.delete_offer = _calls.sync(inner.delete_offer, runner)
        """Withdraws an offer: its status becomes INACTIVE (offers are never hard-deleted).
        Idempotent. Errors: INVALID_ARGUMENT (offer_id not positive), NOT_FOUND,
        PERMISSION_DENIED.
        """
        self.create_plan_group = _calls.sync(inner.create_plan_group, runner)
        """Creates a plan group. Errors: INVALID_ARGUMENT, ALREADY_EXISTS (group_name taken),
        PERMISSION_DENIED.
        """
        self.create_offer_type = _calls.sync(inner.create_offer_type, runner)
        """Creates an offer type. Errors: INVALID_ARGUMENT, ALREADY_EXISTS (offer_type_name
        taken), PERMISSION_DENIED.
        """


class RechargeService:
    """RechargeService: quotes and recharges (single and streamed in bulk), the plans active
    on a number, autopay mandates, postpaid bill reminders and bill payment.

    A recharge on a number that already has an active plan is queued: it starts when
    the current plan ends (CurrentActivePlans status QUEUED).

    Customers act on their own account. Service accounts act on behalf of a customer by
    setting `user_id` (QuoteRecharge, Recharge, BatchRecharge); customers must leave it 0
    (a different value is PERMISSION_DENIED, reason "NOT_OWNER"); admins have no wallet
    to recharge from (PERMISSION_DENIED, reason "NO_WALLET"). Service accounts need the
    scope "recharges.write" to quote and recharge and "recharges.read" to read a
    recharge (PERMISSION_DENIED MISSING_SCOPE otherwise). Recharge history, active plans,
    autopay and bills are the customer's own: other callers get PERMISSION_DENIED
    (admins: reason "USER_ONLY"; service accounts: "SERVICE_NOT_ALLOWED"), except
    GetRecharge (see there).
    """

    def __init__(self, transport: Transport) -> None:
        self.quote_recharge = _calls.UnaryMethod[recharge_service_pb2.QuoteRechargeRequest, recharge_service_pb2.Quote](transport, METHODS['/gencharge.v1.RechargeService/QuoteRecharge'])
        """Prices a recharge without charging (it changes nothing, so it declares
        NO_SIDE_EFFECTS and clients may retry it like a read): eligibility, discount,
        cashback, amount to pay and when the plan would start. Eligible means Recharge with the same inputs would be
        accepted now: the plan's and offer's rules, the payer's account, and for a wallet
        payment (PAYMENT_METHOD_WALLET or unspecified) whether the balance covers
        amount_to_pay. Ineligibility is not an error: `eligible` is false with reasons.
        Errors: INVALID_ARGUMENT, NOT_FOUND (plan, offer, or the user a service names),
        PERMISSION_DENIED (NOT_OWNER, NO_WALLET; MISSING_SCOPE: a service account without
        "recharges.write").
        """
        self.recharge = _calls.UnaryMethod[recharge_service_pb2.RechargeRequest, recharge_service_pb2.Recharge](transport, METHODS['/gencharge.v1.RechargeService/Recharge'])
        """Buys a plan for a phone number. With PAYMENT_METHOD_WALLET (or unspecified) the
        wallet is debited and the plan activated (or queued) at once. With an external
        method the payment gateway is charged: an authorised charge activates the plan at
        once; a charge the user must complete leaves the transaction PENDING, with
        pending_payment, until WalletService.ConfirmPayment. An external payment, once
        charged, always reaches a final state: if recording it fails after the charge, a
        recovery job asks the gateway and records it; retrying with the same request_id
        then returns that one outcome.
        Errors: INVALID_ARGUMENT, NOT_FOUND (plan, offer, or the user a service names),
        FAILED_PRECONDITION (ErrorInfo reason: the first reason QuoteRecharge would give,
        e.g. "PLAN_INACTIVE", "NOT_FIRST_RECHARGE", "OFFER_EXPIRED", with every reason in
        metadata "reasons"; "INSUFFICIENT_FUNDS" for a wallet that cannot pay;
        "PRICE_CHANGED"; "PAYMENT_DECLINED" by the gateway; "IN_PROGRESS": the same
        request_id is still being charged or recorded), ALREADY_EXISTS (request_id reused
        with a different request), PERMISSION_DENIED (ACCOUNT_BLOCKED: the paying account
        is blocked; NOT_OWNER; NO_WALLET; MISSING_SCOPE: a service account without
        "recharges.write"), UNAVAILABLE ("GATEWAY_UNAVAILABLE", "PAYMENT_NOT_RECORDED":
        retry with the same request_id), RESOURCE_EXHAUSTED.
        """
        self.batch_recharge = _calls.BidiStreamMethod[recharge_service_pb2.BatchRechargeRequest, recharge_service_pb2.BatchRechargeResponse](transport, METHODS['/gencharge.v1.RechargeService/BatchRecharge'])
        """Bulk recharges for internal services over one bidirectional stream. Every request
        message is one wallet-paid recharge with its own request_id; every response
        message answers the request at the same position, in order, with either the
        recharge or the error that item got (a failed item does not end the stream).
        Items paid from the same wallet are applied in stream order (their transaction
        IDs and balance_after follow it); the server writes items in groups, so keeping
        many items in flight (hundreds) is what makes a stream fast.
        Stream-level errors: UNAUTHENTICATED, PERMISSION_DENIED (SERVICE_ONLY; MISSING_SCOPE
        for a service account without "recharges.write"), RESOURCE_EXHAUSTED.
        """
        self.batch_recharge_chunks = _calls.BidiStreamMethod[recharge_service_pb2.BatchRechargeChunksRequest, recharge_service_pb2.BatchRechargeChunksResponse](transport, METHODS['/gencharge.v1.RechargeService/BatchRechargeChunks'])
        """BatchRecharge with many items per message, for callers that hold items in bulk
        (a file, a queue): the same items, answers, order, idempotency and errors, without
        paying gRPC's per-message cost for every item. Each request message carries 1 to
        500 items (64-128 is a good size); item indexes count items across the whole
        stream, as in BatchRecharge. Each response message carries the answers of one or
        more consecutive items, in stream order, as soon as they are ready: response
        messages need not line up with request messages (answers of one written group
        usually arrive together).
        Stream-level errors: those of BatchRecharge, and INVALID_ARGUMENT (field "items": a
        message with no items or more than 500). The items of the messages before a bad
        one are answered first; nothing of the bad message is applied.
        """
        self.get_recharge = _calls.UnaryMethod[recharge_service_pb2.GetRechargeRequest, recharge_service_pb2.Recharge](transport, METHODS['/gencharge.v1.RechargeService/GetRecharge'])
        """Returns one recharge (a recharge or autopay debit, bill payments included) by its
        transaction ID, as the Recharge response showed it: its plan period, discount,
        cashback and cashback credit (pending_payment is only in that response).
        Customers read their own recharges; service accounts with the scope
        "recharges.read" any customer's.
        Errors: INVALID_ARGUMENT (txn_id not positive), NOT_FOUND (missing, not a
        recharge, or not the caller's; admins have none), PERMISSION_DENIED (MISSING_SCOPE).
        """
        self.list_recharges = _calls.PagedMethod[recharge_service_pb2.ListRechargesRequest, recharge_service_pb2.ListRechargesResponse, recharge_service_pb2.Recharge](transport, METHODS['/gencharge.v1.RechargeService/ListRecharges'])
        """Lists the caller's recharges, newest first, each as GetRecharge returns it.
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED (USER_ONLY).
        """
        self.list_active_plans = _calls.PagedMethod[recharge_service_pb2.ListActivePlansRequest, recharge_service_pb2.ListActivePlansResponse, recharge_service_pb2.ActivePlan](transport, METHODS['/gencharge.v1.RechargeService/ListActivePlans'])
        """Lists the caller's plans by valid_from (then id): active and queued ones, or those
        of the requested status (e.g. expired).
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED (USER_ONLY).
        """
        self.create_auto_pay = _calls.UnaryMethod[recharge_service_pb2.CreateAutoPayRequest, recharge_service_pb2.AutoPay](transport, METHODS['/gencharge.v1.RechargeService/CreateAutoPay'])
        """Sets up an autopay mandate: the plan is recharged from the wallet on
        next_due_date (once for ONETIME, every validity period for REGULAR).
        Errors: INVALID_ARGUMENT (due date not in the future, tag missing, bad number or
        request_id), NOT_FOUND (plan), FAILED_PRECONDITION (plan inactive), ALREADY_EXISTS
        (an enabled mandate for this number and plan exists, or request_id reused with a
        different request), PERMISSION_DENIED (USER_ONLY).
        """
        self.list_auto_pays = _calls.PagedMethod[recharge_service_pb2.ListAutoPaysRequest, recharge_service_pb2.ListAutoPaysResponse, recharge_service_pb2.AutoPay](transport, METHODS['/gencharge.v1.RechargeService/ListAutoPays'])
        """Lists the caller's autopay mandates, by next_due_date.
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED (USER_ONLY).
        """
        self.update_auto_pay = _calls.UnaryMethod[recharge_service_pb2.UpdateAutoPayRequest, recharge_service_pb2.AutoPay](transport, METHODS['/gencharge.v1.RechargeService/UpdateAutoPay'])
        """Updates a mandate (e.g. "status" to pause it, "next_due_date", "plan_id").
        Errors: INVALID_ARGUMENT (bad value or mask path; enabling a mandate needs a future
        next_due_date), NOT_FOUND (the mandate, or a new plan), FAILED_PRECONDITION (new
        plan inactive), ALREADY_EXISTS (an enabled mandate for this number and plan
        exists), PERMISSION_DENIED (USER_ONLY).
        """
        self.delete_auto_pay = _calls.UnaryMethod[recharge_service_pb2.DeleteAutoPayRequest, google_protobuf_empty_pb2.Empty](transport, METHODS['/gencharge.v1.RechargeService/DeleteAutoPay'])
        """Deletes a mandate. Errors: INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED
        (USER_ONLY).
        """
        self.list_bill_reminders = _calls.PagedMethod[recharge_service_pb2.ListBillRemindersRequest, recharge_service_pb2.ListBillRemindersResponse, recharge_service_pb2.BillReminder](transport, METHODS['/gencharge.v1.RechargeService/ListBillReminders'])
        """Lists the caller's postpaid bill reminders, by due date.
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED (USER_ONLY).
        """
        self.pay_bill = _calls.UnaryMethod[recharge_service_pb2.PayBillRequest, recharge_service_pb2.PayBillResponse](transport, METHODS['/gencharge.v1.RechargeService/PayBill'])
        """Pays the bill of a reminder (postpaid). Wallet payments settle at once; external
        ones when the gateway confirms. A bill is paid at most once, whatever request_ids
        arrive; the same request_id again returns the original response. Errors:
        INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED (USER_ONLY: the caller is not a
        customer), FAILED_PRECONDITION (ALREADY_PAID, PAYMENT_PENDING, INSUFFICIENT_FUNDS,
        PRICE_CHANGED, PAYMENT_DECLINED, IN_PROGRESS), ALREADY_EXISTS (request_id reused
        with a different request), UNAVAILABLE (GATEWAY_UNAVAILABLE, PAYMENT_NOT_RECORDED:
        retry with the same request_id).
        """


class RechargeServiceSync:
    """RechargeService (sync). RechargeService: quotes and recharges (single and streamed in bulk), the plans active on a number, autopay mandates, postpaid bill reminders and bill payment."""

    def __init__(self, inner: RechargeService, runner: Runner) -> None:
        self.quote_recharge = _calls.sync(inner.quote_recharge, runner)
        """Prices a recharge without charging (it changes nothing, so it declares
        NO_SIDE_EFFECTS and clients may retry it like a read): eligibility, discount,
        cashback, amount to pay and when the plan would start. Eligible means Recharge with the same inputs would be
        accepted now: the plan's and offer's rules, the payer's account, and for a wallet
        payment (PAYMENT_METHOD_WALLET or unspecified) whether the balance covers
        amount_to_pay. Ineligibility is not an error: `eligible` is false with reasons.
        Errors: INVALID_ARGUMENT, NOT_FOUND (plan, offer, or the user a service names),
        PERMISSION_DENIED (NOT_OWNER, NO_WALLET; MISSING_SCOPE: a service account without
        "recharges.write").
        """
        self.recharge = _calls.sync(inner.recharge, runner)
        """Buys a plan for a phone number. With PAYMENT_METHOD_WALLET (or unspecified) the
        wallet is debited and the plan activated (or queued) at once. With an external
        method the payment gateway is charged: an authorised charge activates the plan at
        once; a charge the user must complete leaves the transaction PENDING, with
        pending_payment, until WalletService.ConfirmPayment. An external payment, once
        charged, always reaches a final state: if recording it fails after the charge, a
        recovery job asks the gateway and records it; retrying with the same request_id
        then returns that one outcome.
        Errors: INVALID_ARGUMENT, NOT_FOUND (plan, offer, or the user a service names),
        FAILED_PRECONDITION (ErrorInfo reason: the first reason QuoteRecharge would give,
        e.g. "PLAN_INACTIVE", "NOT_FIRST_RECHARGE", "OFFER_EXPIRED", with every reason in
        metadata "reasons"; "INSUFFICIENT_FUNDS" for a wallet that cannot pay;
        "PRICE_CHANGED"; "PAYMENT_DECLINED" by the gateway; "IN_PROGRESS": the same
        request_id is still being charged or recorded), ALREADY_EXISTS (request_id reused
        with a different request), PERMISSION_DENIED (ACCOUNT_BLOCKED: the paying account
        is blocked; NOT_OWNER; NO_WALLET; MISSING_SCOPE: a service account without
        "recharges.write"), UNAVAILABLE ("GATEWAY_UNAVAILABLE", "PAYMENT_NOT_RECORDED":
        retry with the same request_id), RESOURCE_EXHAUSTED.
        """
        self.batch_recharge = _calls.sync(inner.batch_recharge, runner)
        """Bulk recharges for internal services over one bidirectional stream. Every request
        message is one wallet-paid recharge with its own request_id; every response
        message answers the request at the same position, in order, with either the
        recharge or the error that item got (a failed item does not end the stream).
        Items paid from the same wallet are applied in stream order (their transaction
        IDs and balance_after follow it); the server writes items in groups, so keeping
        many items in flight (hundreds) is what makes a stream fast.
        Stream-level errors: UNAUTHENTICATED, PERMISSION_DENIED (SERVICE_ONLY; MISSING_SCOPE
        for a service account without "recharges.write"), RESOURCE_EXHAUSTED.
        """
        self.batch_recharge_chunks = _calls.sync(inner.batch_recharge_chunks, runner)
        """BatchRecharge with many items per message, for callers that hold items in bulk
        (a file, a queue): the same items, answers, order, idempotency and errors, without
        paying gRPC's per-message cost for every item. Each request message carries 1 to
        500 items (64-128 is a good size); item indexes count items across the whole
        stream, as in BatchRecharge. Each response message carries the answers of one or
        more consecutive items, in stream order, as soon as they are ready: response
        messages need not line up with request messages (answers of one written group
        usually arrive together).
        Stream-level errors: those of BatchRecharge, and INVALID_ARGUMENT (field "items": a
        message with no items or more than 500). The items of the messages before a bad
        one are answered first; nothing of the bad message is applied.
        """
        self.get_recharge = _calls.sync(inner.get_recharge, runner)
        """Returns one recharge (a recharge or autopay debit, bill payments included) by its
        transaction ID, as the Recharge response showed it: its plan period, discount,
        cashback and cashback credit (pending_payment is only in that response).
        Customers read their own recharges; service accounts with the scope
        "recharges.read" any customer's.
        Errors: INVALID_ARGUMENT (txn_id not positive), NOT_FOUND (missing, not a
        recharge, or not the caller's; admins have none), PERMISSION_DENIED (MISSING_SCOPE).
        """
        self.list_recharges = _calls.sync(inner.list_recharges, runner)
        """Lists the caller's recharges, newest first, each as GetRecharge returns it.
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED (USER_ONLY).
        """
        self.list_active_plans = _calls.sync(inner.list_active_plans, runner)
        """Lists the caller's plans by valid_from (then id): active and queued ones, or those
        of the requested status (e.g. expired).
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED (USER_ONLY).
        """
        self.create_auto_pay = _calls.sync(inner.create_auto_pay, runner)
        """Sets up an autopay mandate: the plan is recharged from the wallet on
        next_due_date (once for ONETIME, every validity period for REGULAR).
        Errors: INVALID_ARGUMENT (due date not in the future, tag missing, bad number or
        request_id), NOT_FOUND (plan), FAILED_PRECONDITION (plan inactive), ALREADY_EXISTS
        (an enabled mandate for this number and plan exists, or request_id reused with a
        different request), PERMISSION_DENIED (USER_ONLY).
        """
        self.list_auto_pays = _calls.sync(inner.list_auto_pays, runner)
        """Lists the caller's autopay mandates, by next_due_date.
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED (USER_ONLY).
        """
        self.update_auto_pay = _calls.sync(inner.update_auto_pay, runner)
        """Updates a mandate (e.g. "status" to pause it, "next_due_date", "plan_id").
        Errors: INVALID_ARGUMENT (bad value or mask path; enabling a mandate needs a future
        next_due_date), NOT_FOUND (the mandate, or a new plan), FAILED_PRECONDITION (new
        plan inactive), ALREADY_EXISTS (an enabled mandate for this number and plan
        exists), PERMISSION_DENIED (USER_ONLY).
        """
        self.delete_auto_pay = _calls.sync(inner.delete_auto_pay, runner)
        """Deletes a mandate. Errors: INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED
        (USER_ONLY).
        """
        self.list_bill_reminders = _calls.sync(inner.list_bill_reminders, runner)
        """Lists the caller's postpaid bill reminders, by due date.
        Errors: INVALID_ARGUMENT, PERMISSION_DENIED (USER_ONLY).
        """
        self.pay_bill = _calls.sync(inner.pay_bill, runner)
        """Pays the bill of a reminder (postpaid). Wallet payments settle at once; external
        ones when the gateway confirms. A bill is paid at most once, whatever request_ids
        arrive; the same request_id again returns the original response. Errors:
        INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED (USER_ONLY: the caller is not a
        customer), FAILED_PRECONDITION (ALREADY_PAID, PAYMENT_PENDING, INSUFFICIENT_FUNDS,
        PRICE_CHANGED, PAYMENT_DECLINED, IN_PROGRESS), ALREADY_EXISTS (request_id reused
        with a different request), UNAVAILABLE (GATEWAY_UNAVAILABLE, PAYMENT_NOT_RECORDED:
        retry with the same request_id).
        """


class WalletService:
    """WalletService: the caller's wallet, top-ups, the transaction history and referral
    rewards, plus the payment gateway callback.

    Every balance change is a Transaction (ledger row, with balance_after) written in the
    same database transaction as the balance update; the balance never goes negative.
    Money-moving calls take `request_id` (idempotency key, see TopUpRequest.request_id).
    Service accounts may call only ConfirmPayment (scope "payments.confirm"); the other
    RPCs refuse them (PERMISSION_DENIED, reason "SERVICE_NOT_ALLOWED").
    """

    def __init__(self, transport: Transport) -> None:
        self.get_wallet = _calls.UnaryMethod[wallet_service_pb2.GetWalletRequest, wallet_service_pb2.Wallet](transport, METHODS['/gencharge.v1.WalletService/GetWallet'])
        """Returns the caller's wallet. Errors: UNAUTHENTICATED, PERMISSION_DENIED (reason
        "USER_ONLY": the caller is not a customer).
        """
        self.top_up = _calls.UnaryMethod[wallet_service_pb2.TopUpRequest, wallet_service_pb2.TopUpResponse](transport, METHODS['/gencharge.v1.WalletService/TopUp'])
        """Tops up the caller's wallet, paid by UPI, card or net banking through the payment
        gateway. An authorised charge credits the wallet at once (a SUCCESS credit); a
        charge the user must finish at the gateway returns a PENDING credit and
        `pending_payment` (where to send the user); the wallet is credited when the gateway
        confirms (ConfirmPayment). Once charged, the payment always reaches a final state:
        if recording it fails (or the server stops) after the charge, a recovery job asks
        the gateway and records it; retrying with the same request_id then returns that
        one outcome.
        Errors: INVALID_ARGUMENT (amount not positive, above the limit, not INR, WALLET as
        method, details not matching method), ALREADY_EXISTS (request_id reused with a
        different request; ErrorInfo reason "IDEMPOTENCY_KEY_REUSED"), PERMISSION_DENIED
        (ACCOUNT_BLOCKED; USER_ONLY: the caller is not a customer), FAILED_PRECONDITION
        ("PAYMENT_DECLINED"; "IN_PROGRESS": the same request_id is still being charged or
        recorded, retry later), UNAVAILABLE ("GATEWAY_UNAVAILABLE": the gateway did not
        answer; "PAYMENT_NOT_RECORDED": the charge went through but could not be recorded
        yet, it is recorded automatically; retry with the same request_id),
        RESOURCE_EXHAUSTED.
        """
        self.confirm_payment = _calls.UnaryMethod[wallet_service_pb2.ConfirmPaymentRequest, transaction_pb2.Transaction](transport, METHODS['/gencharge.v1.WalletService/ConfirmPayment'])
        """Payment gateway callback: settles a pending transaction (top-up, recharge or bill
        payment paid externally) with what the gateway reported, once the server has
        verified it. The request carries the gateway's callback unchanged
        (ConfirmPaymentRequest.callback); the server checks its signature with the gateway
        adapter (outside any database transaction), then the amount and currency against
        the stored transaction, then settles it in one transaction. Success credits the
        wallet (top-up) or activates the plan (recharge); failure marks the transaction
        failed; an event that reports no final outcome (e.g. payment.authorized) changes
        nothing and returns the transaction. A callback replayed (same or another
        request_id, e.g. a webhook delivered twice) returns the settled transaction
        unchanged. Unsigned, tampered or mismatched callbacks change nothing; they are
        recorded as SECURITY audit events.
        Errors: INVALID_ARGUMENT (bad request_id or deprecated fields; no callback: reason
        "CALLBACK_UNSIGNED" with a field violation on `callback`; a callback that cannot be
        read or names no charge the gateway knows: "CALLBACK_MALFORMED"; `outcome` set and
        different from the callback's), PERMISSION_DENIED (the signature does not match the
        callback's exact bytes: "CALLBACK_SIGNATURE_INVALID"; the caller is not a service
        account: "SERVICE_ONLY"; "MISSING_SCOPE": a service account without
        "payments.confirm"), NOT_FOUND (no transaction for the callback's charge),
        FAILED_PRECONDITION ("PAYMENT_AMOUNT_MISMATCH": amount or currency differ from the
        transaction's; "PAYMENT_ID_MISMATCH": txn_id or payment_transaction_id name
        another payment; "NOT_AN_EXTERNAL_PAYMENT"; "TRANSACTION_ALREADY_SETTLED": settled
        with the other outcome, metadata "status"; a success for a payment that expired
        unpaid is refunded through the gateway, metadata "refund_id" and "refund_status"),
        ALREADY_EXISTS (request_id reused with a different request:
        "IDEMPOTENCY_KEY_REUSED"), UNAVAILABLE (the gateway could not be asked while
        verifying: "GATEWAY_UNAVAILABLE"; retry).
        """
        self.list_transactions = _calls.PagedMethod[wallet_service_pb2.ListTransactionsRequest, wallet_service_pb2.ListTransactionsResponse, transaction_pb2.Transaction](transport, METHODS['/gencharge.v1.WalletService/ListTransactions'])
        """Lists the caller's transactions, newest first (admins and service accounts have
        none: an empty list).
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (bad page token or time range).
        """
        self.get_transaction = _calls.UnaryMethod[wallet_service_pb2.GetTransactionRequest, transaction_pb2.Transaction](transport, METHODS['/gencharge.v1.WalletService/GetTransaction'])
        """Returns one of the caller's transactions; a caller whose role grants
        Transactions/read (e.g. support staff) may read any customer's.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (txn_id not positive), NOT_FOUND (missing
        or not the caller's).
        """
        self.list_referral_rewards = _calls.PagedMethod[wallet_service_pb2.ListReferralRewardsRequest, wallet_service_pb2.ListReferralRewardsResponse, wallet_service_pb2.ReferralReward](transport, METHODS['/gencharge.v1.WalletService/ListReferralRewards'])
        """Lists referral rewards where the caller is the referrer, newest first (admins and
        service accounts have none: an empty list).
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (bad page token).
        """


class WalletServiceSync:
    """WalletService (sync). WalletService: the caller's wallet, top-ups, the transaction history and referral rewards, plus the payment gateway callback."""

    def __init__(self, inner: WalletService, runner: Runner) -> None:
        self.get_wallet = _calls.sync(inner.get_wallet, runner)
        """Returns the caller's wallet. Errors: UNAUTHENTICATED, PERMISSION_DENIED (reason
        "USER_ONLY": the caller is not a customer).
        """
        self.top_up = _calls.sync(inner.top_up, runner)
        """Tops up the caller's wallet, paid by UPI, card or net banking through the payment
        gateway. An authorised charge credits the wallet at once (a SUCCESS credit); a
        charge the user must finish at the gateway returns a PENDING credit and
        `pending_payment` (where to send the user); the wallet is credited when the gateway
        confirms (ConfirmPayment). Once charged, the payment always reaches a final state:
        if recording it fails (or the server stops) after the charge, a recovery job asks
        the gateway and records it; retrying with the same request_id then returns that
        one outcome.
        Errors: INVALID_ARGUMENT (amount not positive, above the limit, not INR, WALLET as
        method, details not matching method), ALREADY_EXISTS (request_id reused with a
        different request; ErrorInfo reason "IDEMPOTENCY_KEY_REUSED"), PERMISSION_DENIED
        (ACCOUNT_BLOCKED; USER_ONLY: the caller is not a customer), FAILED_PRECONDITION
        ("PAYMENT_DECLINED"; "IN_PROGRESS": the same request_id is still being charged or
        recorded, retry later), UNAVAILABLE ("GATEWAY_UNAVAILABLE": the gateway did not
        answer; "PAYMENT_NOT_RECORDED": the charge went through but could not be recorded
        yet, it is recorded automatically; retry with the same request_id),
        RESOURCE_EXHAUSTED.
        """
        self.confirm_payment = _calls.sync(inner.confirm_payment, runner)
        """Payment gateway callback: settles a pending transaction (top-up, recharge or bill
        payment paid externally) with what the gateway reported, once the server has
        verified it. The request carries the gateway's callback unchanged
        (ConfirmPaymentRequest.callback); the server checks its signature with the gateway
        adapter (outside any database transaction), then the amount and currency against
        the stored transaction, then settles it in one transaction. Success credits the
        wallet (top-up) or activates the plan (recharge); failure marks the transaction
        failed; an event that reports no final outcome (e.g. payment.authorized) changes
        nothing and returns the transaction. A callback replayed (same or another
        request_id, e.g. a webhook delivered twice) returns the settled transaction
        unchanged. Unsigned, tampered or mismatched callbacks change nothing; they are
        recorded as SECURITY audit events.
        Errors: INVALID_ARGUMENT (bad request_id or deprecated fields; no callback: reason
        "CALLBACK_UNSIGNED" with a field violation on `callback`; a callback that cannot be
        read or names no charge the gateway knows: "CALLBACK_MALFORMED"; `outcome` set and
        different from the callback's), PERMISSION_DENIED (the signature does not match the
        callback's exact bytes: "CALLBACK_SIGNATURE_INVALID"; the caller is not a service
        account: "SERVICE_ONLY"; "MISSING_SCOPE": a service account without
        "payments.confirm"), NOT_FOUND (no transaction for the callback's charge),
        FAILED_PRECONDITION ("PAYMENT_AMOUNT_MISMATCH": amount or currency differ from the
        transaction's; "PAYMENT_ID_MISMATCH": txn_id or payment_transaction_id name
        another payment; "NOT_AN_EXTERNAL_PAYMENT"; "TRANSACTION_ALREADY_SETTLED": settled
        with the other outcome, metadata "status"; a success for a payment that expired
        unpaid is refunded through the gateway, metadata "refund_id" and "refund_status"),
        ALREADY_EXISTS (request_id reused with a different request:
        "IDEMPOTENCY_KEY_REUSED"), UNAVAILABLE (the gateway could not be asked while
        verifying: "GATEWAY_UNAVAILABLE"; retry).
        """
        self.list_transactions = _calls.sync(inner.list_transactions, runner)
        """Lists the caller's transactions, newest first (admins and service accounts have
        none: an empty list).
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (bad page token or time range).
        """
        self.get_transaction = _calls.sync(inner.get_transaction, runner)
        """Returns one of the caller's transactions; a caller whose role grants
        Transactions/read (e.g. support staff) may read any customer's.
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (txn_id not positive), NOT_FOUND (missing
        or not the caller's).
        """
        self.list_referral_rewards = _calls.sync(inner.list_referral_rewards, runner)
        """Lists referral rewards where the caller is the referrer, newest first (admins and
        service accounts have none: an empty list).
        Errors: UNAUTHENTICATED, INVALID_ARGUMENT (bad page token).
        """

class AsyncServices:
    """Every service of the contract, as attributes (async)."""

    def __init__(self, transport: Transport) -> None:
        self.admin = AdminService(transport)
        """AdminService: operator back office: users, admins, roles and permissions (RBAC), service accounts, refunds and wallet corrections, audit log, reports and dashboard."""
        self.auth = AuthService(transport)
        """AuthService: sign-up, login (password, phone OTP, admin TOTP MFA), token refresh, sessions, passwords, the caller's profile and contacts, the JWKS, and service-account tokens."""
        self.backup = BackupService(transport)
        """BackupService: database backups (DDS Backup), verification, restores, backup schedules (DDS Schedule) and the job log (MongoDB BackupRestoreLogs)."""
        self.content = ContentService(transport)
        """ContentService: static and dynamic content (FAQs, guides, policies; MongoDB Content) and the public contact form (MongoDB ContactForm)."""
        self.notification = NotificationService(transport)
        """NotificationService: the caller's in-app notifications and admin broadcasts. Service accounts may not call it (PERMISSION_DENIED, reason "SERVICE_NOT_ALLOWED")."""
        self.plan = PlanService(transport)
        """PlanService: the public catalogue of plans, plan groups, offers and offer types, and its administration."""
        self.recharge = RechargeService(transport)
        """RechargeService: quotes and recharges (single and streamed in bulk), the plans active on a number, autopay mandates, postpaid bill reminders and bill payment."""
        self.wallet = WalletService(transport)
        """WalletService: the caller's wallet, top-ups, the transaction history and referral rewards, plus the payment gateway callback."""


class SyncServices:
    """Every service of the contract, as attributes (sync)."""

    def __init__(self, inner: AsyncServices, runner: Runner) -> None:
        self.admin = AdminServiceSync(inner.admin, runner)
        """AdminService: operator back office: users, admins, roles and permissions (RBAC), service accounts, refunds and wallet corrections, audit log, reports and dashboard."""
        self.auth = AuthServiceSync(inner.auth, runner)
        """AuthService: sign-up, login (password, phone OTP, admin TOTP MFA), token refresh, sessions, passwords, the caller's profile and contacts, the JWKS, and service-account tokens."""
        self.backup = BackupServiceSync(inner.backup, runner)
        """BackupService: database backups (DDS Backup), verification, restores, backup schedules (DDS Schedule) and the job log (MongoDB BackupRestoreLogs)."""
        self.content = ContentServiceSync(inner.content, runner)
        """ContentService: static and dynamic content (FAQs, guides, policies; MongoDB Content) and the public contact form (MongoDB ContactForm)."""
        self.notification = NotificationServiceSync(inner.notification, runner)
        """NotificationService: the caller's in-app notifications and admin broadcasts. Service accounts may not call it (PERMISSION_DENIED, reason "SERVICE_NOT_ALLOWED")."""
        self.plan = PlanServiceSync(inner.plan, runner)
        """PlanService: the public catalogue of plans, plan groups, offers and offer types, and its administration."""
        self.recharge = RechargeServiceSync(inner.recharge, runner)
        """RechargeService: quotes and recharges (single and streamed in bulk), the plans active on a number, autopay mandates, postpaid bill reminders and bill payment."""
        self.wallet = WalletServiceSync(inner.wallet, runner)
        """WalletService: the caller's wallet, top-ups, the transaction history and referral rewards, plus the payment gateway callback."""
