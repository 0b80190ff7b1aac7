"""The SDK's pure parts, without a server: money conversion, the retry rules read from
the generated RPC table, backoff, request ids, status decoding."""

from __future__ import annotations

import uuid
from decimal import Decimal

import grpc
import pytest
from gencharge_client import (
    DeadlineExceeded,
    GenChargeError,
    InProgress,
    InsufficientFunds,
    InvalidArgument,
    RateLimited,
    ResourceExhausted,
    RetryPolicy,
    TokenExpired,
    Unavailable,
    from_money,
    to_money,
)
from gencharge_client._transport import with_request_id
from gencharge_client.errors import Internal, from_rpc_error, from_status
from gencharge_client.v1 import common_pb2
from gencharge_client.v1 import recharge_service_pb2 as recharge_pb
from gencharge_client.v1.methods import METHODS, Kind
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

RECHARGE = METHODS["/gencharge.v1.RechargeService/Recharge"]
GET_ME = METHODS["/gencharge.v1.AuthService/GetMe"]
UPDATE_ME = METHODS["/gencharge.v1.AuthService/UpdateMe"]
LIST_PLANS = METHODS["/gencharge.v1.PlanService/ListPlans"]
BATCH = METHODS["/gencharge.v1.RechargeService/BatchRecharge"]


# --- money ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "paise"),
    [(Decimal("199.50"), 19950), ("0.01", 1), (12, 1200), ("-5.25", -525), ("7.1", 710)],
)
def test_money_round_trips(amount: Decimal | str | int, paise: int) -> None:
    money = to_money(amount)
    assert money == common_pb2.Money(units_minor=paise, currency_code="INR")
    assert from_money(money) == Decimal(amount)


@pytest.mark.parametrize("amount", ["1.005", "abc", "NaN", "Infinity"])
def test_money_refuses_what_is_not_paise(amount: str) -> None:
    with pytest.raises(ValueError):
        to_money(amount)


def test_money_refuses_floats_and_other_currencies() -> None:
    with pytest.raises(TypeError):
        to_money(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        to_money(True)
    with pytest.raises(ValueError):
        to_money("1.00", "USD")
    with pytest.raises(ValueError):
        from_money(common_pb2.Money(units_minor=100, currency_code="USD"))
    assert from_money(common_pb2.Money(units_minor=100)) == Decimal("1.00")  # "" is INR


# --- the RPC table --------------------------------------------------------------------------


def test_the_table_comes_from_the_descriptors() -> None:
    assert RECHARGE.request_id and not RECHARGE.read_only and RECHARGE.idempotent
    assert GET_ME.read_only and not GET_ME.request_id
    assert not UPDATE_ME.idempotent
    assert LIST_PLANS.paginated and LIST_PLANS.items_field == "plans"
    assert BATCH.kind is Kind.STREAM_STREAM and BATCH.request_id
    assert METHODS["/gencharge.v1.AdminService/DownloadReport"].kind is Kind.UNARY_STREAM
    money_moving = {m.name for m in METHODS.values() if m.request_id}
    assert money_moving == {
        "TopUp",
        "ConfirmPayment",
        "Recharge",
        "BatchRecharge",
        "CreateAutoPay",
        "PayBill",
        "RefundTransaction",
        "AdjustWallet",
        "ApproveWalletAdjustment",
        "RejectWalletAdjustment",
        "SendNotification",
    }  # docs/api.md "Idempotency"


def error(cls: type[GenChargeError], **details: object) -> GenChargeError:
    return cls(cls.CODE, "test", reason=cls.REASON, **details)  # type: ignore[arg-type]


def test_retry_only_where_a_second_attempt_cannot_apply_twice() -> None:
    policy = RetryPolicy()
    for transient in (error(Unavailable), error(DeadlineExceeded)):
        assert policy.retryable(RECHARGE, transient)
        assert policy.retryable(GET_ME, transient)
        assert not policy.retryable(UPDATE_ME, transient)
    assert policy.retryable(RECHARGE, error(InProgress))
    assert not policy.retryable(GET_ME, error(InProgress))
    assert not RetryPolicy(retry_in_progress=False).retryable(RECHARGE, error(InProgress))
    assert not policy.retryable(RECHARGE, error(InsufficientFunds))
    limited = error(RateLimited, retry_delay=3.0)
    assert not policy.retryable(GET_ME, limited)  # only if the caller opts in
    opted = RetryPolicy(retry_rate_limited=True, max_rate_limited_wait=5.0)
    assert opted.retryable(UPDATE_ME, limited)  # refused before it ran: safe for any call
    assert not opted.retryable(GET_ME, error(RateLimited, retry_delay=60.0))


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    seen: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        seen.append((low, high))
        return high

    policy = RetryPolicy(initial_backoff=0.1, multiplier=2.0, max_backoff=0.5, uniform=uniform)
    delays = [policy.backoff(n) for n in range(1, 6)]
    assert delays == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert all(low == 0.0 for low, _ in seen)
    assert policy.backoff(1, error(RateLimited, retry_delay=2.0)) == 2.0  # the server's wait
    real = RetryPolicy(initial_backoff=0.1)
    assert all(0.0 <= real.backoff(3) <= 0.4 for _ in range(100))


def test_request_ids_are_filled_once_and_kept() -> None:
    request = recharge_pb.RechargeRequest(plan_id=3)
    filled, request_id = with_request_id(RECHARGE, request)
    assert uuid.UUID(request_id).version == 4
    assert filled.request_id == request_id and filled.plan_id == 3
    assert request.request_id == ""  # the caller's message is not changed
    again, same = with_request_id(RECHARGE, filled)
    assert again is filled and same == request_id  # a retry keeps it
    other = recharge_pb.QuoteRechargeRequest(plan_id=3)
    assert with_request_id(METHODS["/gencharge.v1.RechargeService/QuoteRecharge"], other) == (
        other,
        "",
    )


# --- status decoding ------------------------------------------------------------------------


def packed(message: object) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message)  # type: ignore[arg-type]
    return out


def test_status_details_become_typed_errors() -> None:
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT,
        message="invalid request: phone_number",
        details=[
            packed(error_details_pb2.ErrorInfo(reason="INVALID_ARGUMENT", domain="gencharge.v1")),
            packed(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field="phone_number", description="not a phone number"
                        )
                    ]
                )
            ),
        ],
    )
    bad = from_status(status, request_id="r-1")
    assert type(bad) is InvalidArgument and bad.code is grpc.StatusCode.INVALID_ARGUMENT
    assert bad.violations_by_field() == {"phone_number": "not a phone number"}
    assert bad.request_id == "r-1"

    expired = from_status(
        status_pb2.Status(
            code=code_pb2.UNAUTHENTICATED,
            details=[
                packed(
                    error_details_pb2.ErrorInfo(
                        reason="INVALID_TOKEN", metadata={"cause": "expired"}
                    )
                )
            ],
        )
    )
    assert type(expired) is TokenExpired

    busy = from_status(
        status_pb2.Status(
            code=code_pb2.RESOURCE_EXHAUSTED,
            details=[
                packed(error_details_pb2.ErrorInfo(reason="REPORTS_BUSY")),
                packed(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=4))),
            ],
        )
    )
    assert type(busy) is ResourceExhausted and busy.retry_delay == 4.0
    unknown = from_status(status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message="x"))
    assert type(unknown).__name__ == "FailedPrecondition" and unknown.reason == ""


def test_a_send_that_failed_under_a_dropped_connection_is_unavailable() -> None:
    """grpc.aio reports a stream whose write met a dropped connection as a local INTERNAL
    (BatchRecharge: the reopen-and-resend path must see it as the lost stream it is)."""
    metadata = grpc.aio.Metadata()
    lost = grpc.aio.AioRpcError(
        grpc.StatusCode.INTERNAL,
        metadata,
        metadata,
        "Internal error from Core",
        'Failed "execute_batch": (<grpc._cython.cygrpc.SendMessageOperation object>,)',
    )
    assert isinstance(from_rpc_error(lost), Unavailable)
    from_server = grpc.aio.AioRpcError(
        grpc.StatusCode.INTERNAL, metadata, metadata, "internal error", "UNKNOWN:Error received"
    )
    assert isinstance(from_rpc_error(from_server), Internal)
