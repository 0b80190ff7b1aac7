"""The input limits (server/core/validation.py), bounded error statuses
(server/core/errors.py) and signed page tokens (server/core/pagination.py): pure unit
tests, no servers. The same rules are proven through the real server in
tests/rpc/test_bad_input.py and tests/rpc/test_fuzz.py."""

from __future__ import annotations

import base64
import json

import pytest
from google.protobuf import descriptor_pool, field_mask_pb2, struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from sqlalchemy import Integer

from gencharge.v1 import auth_service_pb2 as auth_pb
from gencharge.v1 import (
    auth_service_pb2_grpc,  # noqa: F401 - loads the service descriptors
    notification_service_pb2,
    plan_service_pb2,
    recharge_service_pb2,
    wallet_service_pb2,
)
from gencharge.v1 import content_service_pb2 as content_pb
from server.core import pagination, schema
from server.core.errors import (
    MAX_STATUS_BYTES,
    MAX_VIOLATIONS,
    FieldViolation,
    InvalidArgument,
    NotFound,
    bounded,
    to_status_proto,
)
from server.core.validation import INT4_MAX, check_request, is_id_field
from server.rpc.services import SERVICES


def _violations(message: object) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as info:
        check_request(message)  # type: ignore[arg-type]
    return {v.field: v.description for v in info.value.violations}


# ---------------------------------------------------------------- ids


def test_ids_must_fit_postgresql_integer() -> None:
    check_request(wallet_service_pb2.GetTransactionRequest(txn_id=INT4_MAX))
    check_request(wallet_service_pb2.GetTransactionRequest(txn_id=0))
    check_request(wallet_service_pb2.GetTransactionRequest(txn_id=-1))  # the domain's to refuse
    for bad in (INT4_MAX + 1, 2**63 - 1, -(2**31) - 1, -(2**63)):
        assert "txn_id" in _violations(wallet_service_pb2.GetTransactionRequest(txn_id=bad))
    nested = recharge_service_pb2.UpdateAutoPayRequest(
        autopay=recharge_service_pb2.AutoPay(autopay_id=2**40, plan_id=2**31)
    )
    assert set(_violations(nested)) == {"autopay.autopay_id", "autopay.plan_id"}
    repeated = notification_service_pb2.SendNotificationRequest(recipient_ids=[1, 2**31, 3])
    assert set(_violations(repeated)) == {"recipient_ids[1]"}


def test_the_id_rule_matches_the_schema() -> None:
    """Every request field the rule calls an id maps to an ``integer`` column: each
    identity key the API exposes is Integer (only internal counters are BigInteger)."""
    internal = {
        ("otp_codes", "otp_id"),
        ("contact_codes", "code_id"),
        ("audit_outbox", "outbox_id"),
    }
    for table in schema.metadata.tables.values():
        for column in table.columns:
            if column.identity is not None and (table.name, column.name) not in internal:
                assert isinstance(column.type, Integer), (table.name, column.name)
                assert type(column.type) is Integer, (table.name, column.name)
    # And the rule picks up every *_id integer of the implemented services' requests.
    pool = descriptor_pool.Default()
    seen: set[str] = set()
    for spec in SERVICES:
        for method in pool.FindServiceByName(spec.full_name).methods:
            for field in method.input_type.fields:
                if field.name.endswith("_id") and field.cpp_type in (
                    field.CPPTYPE_INT64,
                    field.CPPTYPE_INT32,
                ):
                    assert is_id_field(field), field.full_name
                    seen.add(field.name)
    assert {"txn_id", "plan_id", "autopay_id", "notification_id", "reminder_id"} <= seen


# ---------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("seconds", "nanos", "ok"),
    [
        (0, 0, True),
        (-62135596800, 0, True),  # 0001-01-01T00:00:00Z
        (253402300799, 999_999_999, True),  # 9999-12-31T23:59:59.999999999Z
        (-62135596801, 0, False),
        (253402300800, 0, False),
        (2**40, 0, False),
        (0, -1, False),
        (0, 1_000_000_000, False),
    ],
)
def test_timestamps_within_the_protobuf_range(seconds: int, nanos: int, ok: bool) -> None:
    request = wallet_service_pb2.ListTransactionsRequest(
        created_after=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    )
    if ok:
        check_request(request)
        request.created_after.ToDatetime()  # what the convert modules then do
    else:
        assert "created_after" in _violations(request)


# ---------------------------------------------------------------- strings, masks, structs


def test_strings_without_control_characters_and_bounded() -> None:
    check_request(auth_pb.RegisterRequest(name="Zoë\tŁukasz\r\n😀 ‮"))
    for bad in ("a\x00b", "\x1b[2J", "\x7f", "x" * 4097):
        assert "name" in _violations(auth_pb.RegisterRequest(name=bad))
    description = _violations(auth_pb.RegisterRequest(name="a\x00b"))["name"]
    assert "U+0000" in description
    assert "\x00" not in description


def test_some_fields_have_their_own_longer_bound() -> None:
    """LONG_STRING_FIELDS: the contact form's message (5000) and each string of a
    content body; every other string keeps 4096, nested or not."""
    check_request(content_pb.SubmitContactFormRequest(description="x" * 5000))
    assert "description" in _violations(content_pb.SubmitContactFormRequest(description="x" * 5001))
    assert "name" in _violations(content_pb.SubmitContactFormRequest(name="x" * 4097))
    body = struct_pb2.Struct()
    body.update({"content": "t" * 100_000, "sections": [{"text": "s" * 100_000}]})
    check_request(content_pb.CreateContentRequest(content=content_pb.Content(body=body)))
    long_key = struct_pb2.Struct()
    long_key.update({"k" * 4097: 1})
    assert _violations(content_pb.CreateContentRequest(content=content_pb.Content(body=long_key)))
    assert "content.title" in _violations(
        content_pb.CreateContentRequest(content=content_pb.Content(title="t" * 4097))
    )
    criteria = struct_pb2.Struct()
    criteria.update({"note": "c" * 4097})
    assert _violations(
        plan_service_pb2.CreatePlanRequest(plan=plan_service_pb2.Plan(criteria=criteria))
    )


def test_field_masks_and_structs_are_bounded() -> None:
    mask = field_mask_pb2.FieldMask(paths=["plan_name"] * 64)
    check_request(plan_service_pb2.UpdatePlanRequest(update_mask=mask))
    too_many = field_mask_pb2.FieldMask(paths=[f"f{i}" for i in range(65)])
    assert list(_violations(plan_service_pb2.UpdatePlanRequest(update_mask=too_many))) == [
        "update_mask"
    ]
    long_path = field_mask_pb2.FieldMask(paths=["a" * 129])
    assert "update_mask.paths[0]" in _violations(
        plan_service_pb2.UpdatePlanRequest(update_mask=long_path)
    )
    deep: dict[str, object] = {"leaf": "x"}
    for _ in range(6):  # Struct > Value > ListValue > Value: 4 levels each
        deep = {"k": [deep]}
    struct = struct_pb2.Struct()
    struct.update(deep)
    plan = plan_service_pb2.Plan(criteria=struct)
    assert any(
        "nests deeper" in d
        for d in _violations(plan_service_pb2.CreatePlanRequest(plan=plan)).values()
    )
    nan = struct_pb2.Struct()
    nan.update({"n": float("nan"), "inf": [float("inf")], "ok": 1.5})
    request = plan_service_pb2.CreatePlanRequest(plan=plan_service_pb2.Plan(criteria=nan))
    assert set(_violations(request)) == {"plan.criteria[n]", "plan.criteria[inf][0]"}
    bad_key = struct_pb2.Struct()
    bad_key.update({"a\x00": 1, "ok": "b\x01"})
    request = plan_service_pb2.CreatePlanRequest(plan=plan_service_pb2.Plan(criteria=bad_key))
    assert set(_violations(request)) == {"plan.criteria[a?]", "plan.criteria[ok]"}


def test_violations_per_request_are_bounded() -> None:
    request = notification_service_pb2.SendNotificationRequest(recipient_ids=[2**40] * 500)
    with pytest.raises(InvalidArgument) as info:
        check_request(request)
    assert len(info.value.violations) == MAX_VIOLATIONS


# ---------------------------------------------------------------- bounded statuses


def test_statuses_are_bounded_whatever_they_quote() -> None:
    many = [FieldViolation("update_mask", f"unknown field path {'😀' * 300!r}")] * 3000
    status = to_status_proto(InvalidArgument.of(many))
    assert status.ByteSize() <= MAX_STATUS_BYTES + 512
    assert len(status.message.encode()) <= 256
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    assert 1 <= len(bad.field_violations) <= MAX_VIOLATIONS
    assert bad.field_violations[-1].description.endswith("more violations)")
    big_meta = NotFound("x" * 10_000, metadata={f"k{i}" * 50: "v" * 10_000 for i in range(100)})
    status = to_status_proto(big_meta)
    assert status.ByteSize() < 2 * 1024
    assert bounded("ab😀", 5) == "ab..."  # never cuts a character in half
    assert bounded("short", 5) == "short"


# ---------------------------------------------------------------- page tokens


def test_page_tokens_are_signed_and_verified() -> None:
    page = pagination.parse(10, "", {"f": 1})
    token = page.next_token(["2024-01-01T00:00:00+00:00", 7], True)
    again = pagination.parse(10, token, {"f": 1})
    assert pagination.time_keyset(again.after) is not None
    body, tag = token.split(".")
    raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw["a"][1] = 2**70
    forged = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")
    for bad in (forged, f"{forged}.{tag}", token + "x", "x" * 2000, "a.b.c"):
        with pytest.raises(InvalidArgument):
            pagination.parse(10, bad, {"f": 1})
    with pytest.raises(InvalidArgument):
        pagination.parse(10, token, {"f": 2})  # other filters
    # Another key: the same token is no longer this service's.
    saved = pagination._Signer.key
    try:
        pagination.use_signing_key(b"k" * 32)
        with pytest.raises(InvalidArgument):
            pagination.parse(10, token, {"f": 1})
    finally:
        pagination.use_signing_key(saved)
    with pytest.raises(ValueError):
        pagination.use_signing_key(b"short")


def test_keyset_values_are_range_checked() -> None:
    assert pagination.id_keyset(None) is None
    assert pagination.id_keyset(INT4_MAX) == INT4_MAX
    for bad in (0, -1, INT4_MAX + 1, True, "1", 1.5, [1]):
        with pytest.raises(InvalidArgument):
            pagination.id_keyset(bad)
    for bad_pair in (["2024-01-01T00:00:00+00:00", 2**70], ["2024-01-01T00:00:00", 1], "x"):
        with pytest.raises(InvalidArgument):
            pagination.time_keyset(bad_pair)
