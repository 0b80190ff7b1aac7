"""A customer charged while the server dies is credited exactly once (issue #8, §3).

`gencharge serve` runs as its own process against external databases, with Razorpay
pointed at the Razorpay stand-in (tests/payments/razorpay_standin.py, whose state lives
in this test process and so survives the server). A TopUp reaches the gateway: the
order is created there, and the answer never comes back; the server is killed
(SIGKILL) at that moment, between the charge and its record. The customer then pays
the order at Checkout. A new server process starts; its recovery job finds the charge
left in between, asks the gateway, and credits it. The customer's retry with the same
request_id gets that one transaction, and the gateway's callback forwarded afterwards
changes nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gencharge.v1 import auth_service_pb2 as auth_pb
from gencharge.v1 import (
    auth_service_pb2_grpc,
    common_pb2,
    transaction_pb2,
    wallet_service_pb2_grpc,
)
from gencharge.v1 import wallet_service_pb2 as wallet_pb
from server.auth.keys import generate_private_key_pem
from server.auth.scopes import PAYMENTS_CONFIRM
from server.core.crypto import generate_data_key
from server.ops.embedded import free_port
from tests.helpers.clock import HANG_SECONDS
from tests.ops.test_cli import GENCHARGE, _wait_serving
from tests.payments.razorpay_standin import KEY_ID, KEY_SECRET, WEBHOOK_SECRET, RazorpayStandIn

AMOUNT_MINOR = 75_000
#: A bound on waits for something that must happen (not a timing assumption).
CONVERGE_SECONDS = 120.0


@pytest.fixture
def standin() -> Iterator[RazorpayStandIn]:
    with RazorpayStandIn() as server:
        yield server


def _environment(
    private_tmp: Path, pg_url: str, mongo_url: str, standin: RazorpayStandIn
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENCHARGE_")}
    env.update(
        GENCHARGE_DATABASE_URL=pg_url,
        GENCHARGE_MONGO_URL=mongo_url,
        GENCHARGE_DATA_DIR=str(private_tmp / "data"),
        GENCHARGE_LOG_FORMAT="json",
        GENCHARGE_JWT_PRIVATE_KEY=generate_private_key_pem(),
        GENCHARGE_DATA_ENCRYPTION_KEY=generate_data_key(),
        GENCHARGE_PAYMENT_GATEWAY="razorpay",
        GENCHARGE_RAZORPAY_KEY_ID=KEY_ID,
        GENCHARGE_RAZORPAY_KEY_SECRET=KEY_SECRET,
        GENCHARGE_RAZORPAY_WEBHOOK_SECRET=WEBHOOK_SECRET,
        GENCHARGE_RAZORPAY_API_URL=standin.url,
        GENCHARGE_RAZORPAY_CHECKOUT_URL="https://pay.example.com/checkout?order_id={order_id}",
        # The first server must still be waiting on the gateway when it is killed: its
        # request may not time out (and retry) first.
        GENCHARGE_PAYMENT_GATEWAY_TIMEOUT_SECONDS="120",
        GENCHARGE_SCHEDULER_INTERVAL_SECONDS="0.2",
        GENCHARGE_SHUTDOWN_GRACE_SECONDS="5",
    )
    return env


def _serve(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    target = f"127.0.0.1:{free_port()}"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [GENCHARGE, "serve"],
            env={**env, "GENCHARGE_LISTEN": target},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    _wait_serving(target, proc)
    return proc, target


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _until(what: str, condition: object) -> None:
    """Wait (bounded) for ``condition()`` to hold: for something that must happen."""
    deadline = time.monotonic() + CONVERGE_SECONDS
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def _top_up(channel: grpc.Channel, token: str, request_id: str) -> wallet_pb.TopUpResponse:
    reply: wallet_pb.TopUpResponse = wallet_service_pb2_grpc.WalletServiceStub(channel).TopUp(
        wallet_pb.TopUpRequest(
            request_id=request_id,
            amount=common_pb2.Money(units_minor=AMOUNT_MINOR, currency_code="INR"),
            payment_method=common_pb2.PAYMENT_METHOD_UPI,
            payment_details=common_pb2.PaymentDetails(
                upi=common_pb2.UpiPayment(vpa="customer@okbank")
            ),
        ),
        metadata=[("authorization", f"Bearer {token}")],
        timeout=CONVERGE_SECONDS,
    )
    return reply


def _balance(channel: grpc.Channel, token: str) -> int:
    wallet = wallet_service_pb2_grpc.WalletServiceStub(channel).GetWallet(
        wallet_pb.GetWalletRequest(),
        metadata=[("authorization", f"Bearer {token}")],
        timeout=HANG_SECONDS,
    )
    return int(wallet.balance.units_minor)


def _transactions(channel: grpc.Channel, token: str) -> list[transaction_pb2.Transaction]:
    reply = wallet_service_pb2_grpc.WalletServiceStub(channel).ListTransactions(
        wallet_pb.ListTransactionsRequest(page_size=50),
        metadata=[("authorization", f"Bearer {token}")],
        timeout=HANG_SECONDS,
    )
    return list(reply.transactions)


def _service_token(env: dict[str, str], target: str) -> str:
    created = subprocess.run(
        [
            GENCHARGE,
            "create-service-account",
            "--name",
            "payments-edge",
            "--scope",
            PAYMENTS_CONFIRM,
        ],
        env=env,
        capture_output=True,
        check=True,
        timeout=CONVERGE_SECONDS,
    ).stdout.decode()
    fields = dict(line.split(": ", 1) for line in created.splitlines() if ": " in line)
    with grpc.insecure_channel(target) as channel:
        reply = auth_service_pb2_grpc.AuthServiceStub(channel).IssueServiceToken(
            auth_pb.IssueServiceTokenRequest(
                client_id=fields["client_id"], client_secret=fields["client_secret"]
            ),
            timeout=HANG_SECONDS,
        )
    return str(reply.access_token)


def test_a_charge_cut_off_by_a_crash_is_credited_exactly_once(
    private_tmp: Path, pg_url: str, mongo_url: str, standin: RazorpayStandIn
) -> None:
    env = _environment(private_tmp, pg_url, mongo_url, standin)
    log_path = private_tmp / "serve.log"
    first, target = _serve(env, log_path)
    try:
        with grpc.insecure_channel(target) as channel:
            customer = auth_service_pb2_grpc.AuthServiceStub(channel).Register(
                auth_pb.RegisterRequest(
                    name="Crash Customer",
                    email=f"crash-{uuid.uuid4().hex[:10]}@example.com",
                    password="correct horse battery staple 11",
                    user_type=common_pb2.USER_TYPE_PREPAID,
                ),
                timeout=HANG_SECONDS,
            )
            token = customer.tokens.access_token
            # The order is created at the gateway; its answer is never sent.
            standin.hang_next(1, method="POST", path_prefix="/v1/orders", after_processing=True)
            request_id = str(uuid.uuid4())
            outcome: list[BaseException | wallet_pb.TopUpResponse] = []

            def call() -> None:
                try:
                    outcome.append(_top_up(channel, token, request_id))
                except grpc.RpcError as exc:
                    outcome.append(exc)

            caller = threading.Thread(target=call)
            caller.start()
            _until(
                "the order's answer is held back",
                lambda: any(r.status is None and r.method == "POST" for r in standin.requests),
            )
            first.send_signal(signal.SIGKILL)  # between the charge and its record
            first.wait()
            caller.join(CONVERGE_SECONDS)
        assert len(outcome) == 1 and isinstance(outcome[0], grpc.RpcError), outcome
        (order,) = standin.orders
        paid = standin.pay(order["id"])  # the customer finishes paying at Checkout

        second, target = _serve({**env, "GENCHARGE_PAYMENT_RECOVERY_AFTER_SECONDS": "0"}, log_path)
        try:
            with grpc.insecure_channel(target) as channel:
                _until("the recovered charge is credited", lambda: _balance(channel, token) > 0)
                assert _balance(channel, token) == AMOUNT_MINOR
                (credit,) = _transactions(channel, token)
                assert credit.status == transaction_pb2.TRANSACTION_STATUS_SUCCESS
                assert credit.payment_transaction_id == order["id"]
                # The customer's retry converges on the one transaction.
                retried = _top_up(channel, token, request_id)
                assert retried.transaction.txn_id == credit.txn_id
                assert retried.transaction.status == transaction_pb2.TRANSACTION_STATUS_SUCCESS
                # The gateway's callback, forwarded late, changes nothing.
                service = _service_token(env, target)
                confirmed = wallet_service_pb2_grpc.WalletServiceStub(channel).ConfirmPayment(
                    wallet_pb.ConfirmPaymentRequest(
                        request_id=str(uuid.uuid4()),
                        checkout=wallet_pb.PaymentCheckoutCallback(
                            order_id=paid.order_id,
                            payment_id=paid.payment_id,
                            signature=paid.checkout_signature,
                        ),
                    ),
                    metadata=[("authorization", f"Bearer {service}")],
                    timeout=HANG_SECONDS,
                )
                assert confirmed.txn_id == credit.txn_id
                assert _balance(channel, token) == AMOUNT_MINOR
                assert len(_transactions(channel, token)) == 1
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=CONVERGE_SECONDS) == 0, log_path.read_text()
        finally:
            _stop(second)
    finally:
        _stop(first)
    assert len(standin.orders) == 1  # one order, one capture: never charged twice
    assert [p["status"] for p in standin.payments] == ["captured"]
    text = log_path.read_text()
    assert "payment recovered" in text
    assert KEY_SECRET not in text and WEBHOOK_SECRET not in text
