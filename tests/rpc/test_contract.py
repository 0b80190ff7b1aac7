"""Contract tests for the gRPC API (package gencharge.v1).

Plain synchronous tests, no servers: the generated code is fresh, buf lint/format are
clean, every RPC declares an access rule (and the rule is the one we expect), money
moving requests carry an idempotency key, and the API follows our AIP conventions.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATED = REPO_ROOT / "generated"
if str(GENERATED) not in sys.path:
    sys.path.insert(0, str(GENERATED))

from gencharge.v1 import access_pb2  # noqa: E402
from server.auth.scopes import SCOPES  # noqa: E402


def _load_generate_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gencharge_generate_tool", REPO_ROOT / "tools" / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: its dataclasses look their module up by name.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


generate_tool = _load_generate_tool()

FieldDescriptor = descriptor.FieldDescriptor
Audience = access_pb2.Audience
Action = access_pb2.Action

PUBLIC = "PUBLIC"
AUTHENTICATED = "AUTHENTICATED"
SERVICE = "SERVICE"

# Every service and RPC of the contract with its access rule: an audience, or
# "Resource/action" for AUDIENCE_PERMISSION; then, for the RPCs service accounts may
# call, the scope they need ("SERVICE payments.confirm") or "self" (any service account).
EXPECTED_RULES: dict[str, dict[str, str]] = {
    "AuthService": {
        "Register": PUBLIC,
        "Login": PUBLIC,
        "VerifyMfa": PUBLIC,
        "RequestOtp": PUBLIC,
        "VerifyOtp": PUBLIC,
        "RefreshToken": PUBLIC,
        "Logout": AUTHENTICATED,
        "ListSessions": AUTHENTICATED,
        "RevokeSession": AUTHENTICATED,
        "ChangePassword": AUTHENTICATED,
        "RequestPasswordReset": PUBLIC,
        "ResetPassword": PUBLIC,
        "GetMe": f"{AUTHENTICATED} self",
        "UpdateMe": AUTHENTICATED,
        "SendContactCode": AUTHENTICATED,
        "VerifyContact": AUTHENTICATED,
        "StartContactChange": AUTHENTICATED,
        "ConfirmContactChange": AUTHENTICATED,
        "GetJwks": PUBLIC,
        "IssueServiceToken": PUBLIC,
    },
    "WalletService": {
        "GetWallet": AUTHENTICATED,
        "TopUp": AUTHENTICATED,
        "ConfirmPayment": f"{SERVICE} payments.confirm",
        "ListTransactions": AUTHENTICATED,
        "GetTransaction": AUTHENTICATED,
        "ListReferralRewards": AUTHENTICATED,
    },
    "PlanService": {
        "ListPlans": PUBLIC,
        "GetPlan": PUBLIC,
        "ListPlanGroups": PUBLIC,
        "ListOffers": PUBLIC,
        "GetOffer": PUBLIC,
        "ListOfferTypes": PUBLIC,
        "CreatePlan": "Plans/write",
        "UpdatePlan": "Plans/edit",
        "DeletePlan": "Plans/delete",
        "CreateOffer": "Offers/write",
        "UpdateOffer": "Offers/edit",
        "DeleteOffer": "Offers/delete",
        "CreatePlanGroup": "Plans/write",
        "CreateOfferType": "Offers/write",
    },
    "RechargeService": {
        "QuoteRecharge": f"{AUTHENTICATED} recharges.write",
        "Recharge": f"{AUTHENTICATED} recharges.write",
        "BatchRecharge": f"{SERVICE} recharges.write",
        "BatchRechargeChunks": f"{SERVICE} recharges.write",
        "GetRecharge": f"{AUTHENTICATED} recharges.read",
        "ListRecharges": AUTHENTICATED,
        "ListActivePlans": AUTHENTICATED,
        "CreateAutoPay": AUTHENTICATED,
        "ListAutoPays": AUTHENTICATED,
        "UpdateAutoPay": AUTHENTICATED,
        "DeleteAutoPay": AUTHENTICATED,
        "ListBillReminders": AUTHENTICATED,
        "PayBill": AUTHENTICATED,
    },
    "NotificationService": {
        "ListNotifications": AUTHENTICATED,
        "MarkNotificationViewed": AUTHENTICATED,
        "SendNotification": "Notifications/write",
        "ListNotificationTypes": AUTHENTICATED,
    },
    "ContentService": {
        "ListContent": PUBLIC,
        "GetContent": PUBLIC,
        "SubmitContactForm": PUBLIC,
        "CreateContent": "Content/write",
        "UpdateContent": "Content/edit",
        "DeleteContent": "Content/delete",
        "ListContactForms": "ContactForm/read",
        "UpdateContactForm": "ContactForm/edit",
    },
    "AdminService": {
        "ListUsers": "Users/read",
        "GetUser": "Users/read",
        "BlockUser": "Users/edit",
        "UnblockUser": "Users/edit",
        "ArchiveUser": "Users/delete",
        "RevokeUserSessions": "Users/edit",
        "ExportUserData": "Users/edit",
        "EraseUserData": "Users/delete",
        "CreateAdmin": "Admins/write",
        "ListAdmins": "Admins/read",
        "UpdateAdmin": "Admins/edit",
        "ListRoles": "Roles/read",
        "CreateRole": "Roles/write",
        "ListPermissions": "Permissions/read",
        "CreatePermission": "Permissions/write",
        "GrantPermission": "Roles/edit",
        "RevokePermission": "Roles/edit",
        "CreateServiceAccount": "ServiceAccounts/write",
        "ListServiceAccounts": "ServiceAccounts/read",
        "DisableServiceAccount": "ServiceAccounts/edit",
        "RefundTransaction": "Transactions/write",
        "AdjustWallet": "Wallet/write",
        "ApproveWalletAdjustment": "Wallet/edit",
        "RejectWalletAdjustment": "Wallet/edit",
        "ListWalletAdjustments": "Wallet/read",
        "ListAuditLogs": "AuditLog/read",
        "GenerateReport": "Reports/write",
        "ListReports": "Reports/read",
        "DownloadReport": "Reports/read",
        "GetDashboardStats": "Reports/read",
    },
    "BackupService": {
        "CreateBackup": "Backup/write",
        "ListBackups": "Backup/read",
        "GetBackup": "Backup/read",
        "VerifyBackup": "Backup/read",
        "RestoreBackup": "Backup/edit",
        "DeleteBackup": "Backup/delete",
        "CreateSchedule": "Schedule/write",
        "ListSchedules": "Schedule/read",
        "UpdateSchedule": "Schedule/edit",
        "DeleteSchedule": "Schedule/delete",
        "ListBackupRestoreLogs": "Backup/read",
    },
}

# DDS resource names (Permissions.resource) an access rule may name.
KNOWN_RESOURCES = {
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
}

# RPCs that move money: their request must start with `string request_id = 1`.
MONEY_MOVING_RPCS = {
    "WalletService.TopUp",
    "WalletService.ConfirmPayment",
    "RechargeService.Recharge",
    "RechargeService.BatchRecharge",
    "RechargeService.CreateAutoPay",
    "RechargeService.PayBill",
    "AdminService.RefundTransaction",
    "AdminService.AdjustWallet",
    "AdminService.ApproveWalletAdjustment",
    "AdminService.RejectWalletAdjustment",
}

# RPCs that move money in items: each item (the request's one repeated field) must start
# with `string request_id = 1`.
MONEY_MOVING_ITEMS = {"RechargeService.BatchRechargeChunks"}

# List RPCs that return small reference lists in one response (no pagination).
UNPAGINATED_LISTS = {"NotificationService.ListNotificationTypes"}

# Streaming shapes: rpc -> (client_streaming, server_streaming).
STREAMING = {
    "RechargeService.BatchRecharge": (True, True),
    "RechargeService.BatchRechargeChunks": (True, True),
    "BackupService.CreateBackup": (False, True),
    "BackupService.RestoreBackup": (False, True),
    "AdminService.DownloadReport": (False, True),
}

ACTION_NAMES = {
    Action.ACTION_READ: "read",
    Action.ACTION_WRITE: "write",
    Action.ACTION_EDIT: "edit",
    Action.ACTION_DELETE: "delete",
}
AUDIENCE_NAMES = {
    Audience.AUDIENCE_PUBLIC: PUBLIC,
    Audience.AUDIENCE_AUTHENTICATED: AUTHENTICATED,
    Audience.AUDIENCE_SERVICE: SERVICE,
}


def _pb2_modules() -> list[ModuleType]:
    package = importlib.import_module("gencharge.v1")
    names = sorted(
        info.name for info in pkgutil.iter_modules(package.__path__) if info.name.endswith("_pb2")
    )
    return [importlib.import_module(f"gencharge.v1.{name}") for name in names]


PB2_MODULES = _pb2_modules()


def _services() -> dict[str, descriptor.ServiceDescriptor]:
    services: dict[str, descriptor.ServiceDescriptor] = {}
    for module in PB2_MODULES:
        file_descriptor: descriptor.FileDescriptor = module.DESCRIPTOR
        assert file_descriptor.package == "gencharge.v1", file_descriptor.name
        services.update(file_descriptor.services_by_name)
    return services


SERVICES = _services()
METHODS = [
    (f"{service.name}.{method.name}", method)
    for service in SERVICES.values()
    for method in service.methods
]
METHOD_IDS = [name for name, _ in METHODS]


def _all_messages() -> list[descriptor.Descriptor]:
    found: list[descriptor.Descriptor] = []

    def visit(message: descriptor.Descriptor) -> None:
        found.append(message)
        for nested in message.nested_types:
            visit(nested)

    for module in PB2_MODULES:
        for message in module.DESCRIPTOR.message_types_by_name.values():
            visit(message)
    return found


def _all_enums() -> list[descriptor.EnumDescriptor]:
    enums: list[descriptor.EnumDescriptor] = []
    for module in PB2_MODULES:
        enums.extend(module.DESCRIPTOR.enum_types_by_name.values())
    for message in _all_messages():
        enums.extend(message.enum_types)
    return enums


def _rule(method: descriptor.MethodDescriptor) -> access_pb2.AccessRule:
    options = method.GetOptions()
    assert options.HasExtension(access_pb2.access), (
        f"{method.full_name} has no option (gencharge.v1.access)"
    )
    rule: access_pb2.AccessRule = options.Extensions[access_pb2.access]
    return rule


def _describe(rule: access_pb2.AccessRule) -> str:
    if rule.audience == Audience.AUDIENCE_PERMISSION:
        described = f"{rule.resource}/{ACTION_NAMES.get(rule.action, '?')}"
    else:
        described = AUDIENCE_NAMES.get(rule.audience, "UNSPECIFIED")
    if rule.service_scope:
        described += f" {rule.service_scope}"
    if rule.service_self:
        described += " self"
    return described


# --- generated code and buf ----------------------------------------------------------


def test_generated_code_is_fresh() -> None:
    stale = generate_tool.check()
    assert not stale, (
        "generated/ is stale, run `.venv/bin/python tools/generate.py`:\n" + "\n".join(stale)
    )


def test_buf_lint_and_format_are_clean() -> None:
    # Fails (never skips) when buf is missing: `make test` installs it with `npm ci`.
    assert generate_tool.BUF.exists(), f"{generate_tool.BUF} missing: run `npm ci`"
    failures = generate_tool.lint()
    assert not failures, "\n".join(failures)


# --- services and access rules ---------------------------------------------------------


def test_expected_services_exist() -> None:
    assert sorted(SERVICES) == sorted(EXPECTED_RULES)


@pytest.mark.parametrize("service_name", sorted(EXPECTED_RULES))
def test_expected_rpcs_exist(service_name: str) -> None:
    service = SERVICES[service_name]
    assert sorted(m.name for m in service.methods) == sorted(EXPECTED_RULES[service_name])


@pytest.mark.parametrize(("name", "method"), METHODS, ids=METHOD_IDS)
def test_every_rpc_has_a_valid_access_rule(name: str, method: descriptor.MethodDescriptor) -> None:
    rule = _rule(method)
    assert rule.audience != Audience.AUDIENCE_UNSPECIFIED, f"{name}: audience unspecified"
    if rule.audience == Audience.AUDIENCE_PERMISSION:
        assert rule.resource, f"{name}: PERMISSION rule without resource"
        assert rule.resource in KNOWN_RESOURCES, f"{name}: unknown resource {rule.resource}"
        assert rule.action != Action.ACTION_UNSPECIFIED, f"{name}: PERMISSION rule w/o action"
    else:
        assert not rule.resource, f"{name}: only PERMISSION rules name a resource"
        assert rule.action == Action.ACTION_UNSPECIFIED, f"{name}: only PERMISSION has action"
    # Service accounts: a known scope on SERVICE (required) and AUTHENTICATED rules only;
    # "self" only on AUTHENTICATED rules without a scope.
    if rule.audience == Audience.AUDIENCE_SERVICE:
        assert rule.service_scope, f"{name}: SERVICE rule without service_scope"
    if rule.service_scope:
        assert rule.service_scope in SCOPES, f"{name}: unknown scope {rule.service_scope}"
        assert rule.audience in (Audience.AUDIENCE_SERVICE, Audience.AUDIENCE_AUTHENTICATED), name
    if rule.service_self:
        assert rule.audience == Audience.AUDIENCE_AUTHENTICATED and not rule.service_scope, name


def test_every_scope_opens_some_rpc() -> None:
    used = {_rule(method).service_scope for _, method in METHODS} - {""}
    assert used == set(SCOPES)


@pytest.mark.parametrize(("name", "method"), METHODS, ids=METHOD_IDS)
def test_access_rule_is_the_expected_one(name: str, method: descriptor.MethodDescriptor) -> None:
    service_name, rpc_name = name.split(".")
    assert _describe(_rule(method)) == EXPECTED_RULES[service_name][rpc_name]


def test_streaming_shapes() -> None:
    for name, method in METHODS:
        expected = STREAMING.get(name, (False, False))
        assert (method.client_streaming, method.server_streaming) == expected, name


# --- idempotency, money and AIP conventions --------------------------------------------


def _has_money_field(message: descriptor.Descriptor) -> bool:
    return any(
        field.message_type is not None and field.message_type.full_name == "gencharge.v1.Money"
        for field in message.fields
    )


@pytest.mark.parametrize(("name", "method"), METHODS, ids=METHOD_IDS)
def test_money_moving_requests_have_request_id(
    name: str, method: descriptor.MethodDescriptor
) -> None:
    request = method.input_type
    if name in MONEY_MOVING_ITEMS:
        (items,) = request.fields
        assert items.is_repeated, name
        request = items.message_type
    elif name not in MONEY_MOVING_RPCS and not _has_money_field(request):
        return
    field = request.fields_by_name.get("request_id")
    assert field is not None, f"{name}: {request.name} moves money but has no request_id"
    assert field.number == 1, f"{name}: request_id must be field 1"
    assert field.type == FieldDescriptor.TYPE_STRING, f"{name}: request_id must be a string"


def test_money_moving_rpcs_exist() -> None:
    assert set(METHOD_IDS) >= MONEY_MOVING_RPCS | MONEY_MOVING_ITEMS


def test_money_is_integer_minor_units() -> None:
    from gencharge.v1 import common_pb2

    money = common_pb2.Money.DESCRIPTOR
    assert [(f.name, f.type) for f in money.fields] == [
        ("units_minor", FieldDescriptor.TYPE_INT64),
        ("currency_code", FieldDescriptor.TYPE_STRING),
    ]


def test_no_floating_point_fields() -> None:
    floats = [
        f"{message.full_name}.{field.name}"
        for message in _all_messages()
        for field in message.fields
        if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
    ]
    assert not floats, f"use Money or integers, not floating point: {floats}"


def test_enums_have_prefixed_unspecified_zero_value() -> None:
    for enum in _all_enums():
        prefix = "".join(
            f"_{c}" if c.isupper() and i else c for i, c in enumerate(enum.name)
        ).upper()
        zero = enum.values_by_number[0].name
        assert zero == f"{prefix}_UNSPECIFIED", f"{enum.full_name}: zero value {zero}"
        for value in enum.values:
            assert value.name.startswith(f"{prefix}_"), f"{enum.full_name}.{value.name}"


@pytest.mark.parametrize(("name", "method"), METHODS, ids=METHOD_IDS)
def test_list_rpcs_are_paginated(name: str, method: descriptor.MethodDescriptor) -> None:
    if not method.name.startswith("List") or name in UNPAGINATED_LISTS:
        return
    request, response = method.input_type.fields_by_name, method.output_type.fields_by_name
    assert request["page_size"].type == FieldDescriptor.TYPE_INT32, name
    assert request["page_token"].type == FieldDescriptor.TYPE_STRING, name
    assert response["next_page_token"].type == FieldDescriptor.TYPE_STRING, name


@pytest.mark.parametrize(("name", "method"), METHODS, ids=METHOD_IDS)
def test_update_rpcs_take_a_field_mask(name: str, method: descriptor.MethodDescriptor) -> None:
    if not method.name.startswith("Update"):
        return
    mask = method.input_type.fields_by_name.get("update_mask")
    assert mask is not None, f"{name}: no update_mask"
    assert mask.message_type is not None, f"{name}: update_mask is not a message"
    assert mask.message_type.full_name == "google.protobuf.FieldMask", name
