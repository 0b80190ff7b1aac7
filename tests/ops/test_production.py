"""`gencharge serve` in production mode, configured as the README's "Production
configuration" says: external databases (the session's PostgreSQL and MongoDB servers,
a fresh database each), explicit keys, the bootstrap admin, the message webhook, and
Razorpay pointed at the Razorpay stand-in (tests/payments/razorpay_standin.py; the real
API cannot be reached from these machines).

It serves (a customer registers and tops up: an order is created at the gateway; the
bootstrap admin logs in with a second factor), stops cleanly on SIGTERM, and refuses to
start, with one line and no traceback, with the sandbox gateway, without a Razorpay
secret or without the backup key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from gencharge.v1 import auth_service_pb2 as auth_pb
from gencharge.v1 import auth_service_pb2_grpc, common_pb2, transaction_pb2, wallet_service_pb2_grpc
from gencharge.v1 import wallet_service_pb2 as wallet_pb
from server.auth import totp
from server.auth.keys import generate_private_key_pem
from server.core.crypto import generate_data_key
from server.ops.embedded import free_port
from server.payments.razorpay import order_receipt
from tests.helpers.clock import HANG_SECONDS
from tests.ops.test_cli import GENCHARGE, _wait_serving
from tests.payments.razorpay_standin import KEY_ID, KEY_SECRET, WEBHOOK_SECRET, RazorpayStandIn

ADMIN_EMAIL = "ops@example.com"
ADMIN_PASSWORD = "a long production passphrase 93"
CHECKOUT = "https://pay.example.com/checkout?order_id={order_id}&key={key_id}"
#: A bound on a hang: draining, closing the pools and the gateway.
STOP_SECONDS = 2 * HANG_SECONDS


@pytest.fixture
def standin() -> Iterator[RazorpayStandIn]:
    with RazorpayStandIn() as server:
        yield server


@pytest.fixture
def production_env(
    private_tmp: Path, pg_url: str, mongo_url: str, standin: RazorpayStandIn
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENCHARGE_")}
    env.update(
        GENCHARGE_ENVIRONMENT="production",
        GENCHARGE_DATABASE_URL=pg_url,
        GENCHARGE_MONGO_URL=mongo_url,
        GENCHARGE_LISTEN=f"127.0.0.1:{free_port()}",
        # Nothing may be written here in production (keys are configured, no embedded
        # servers): the test checks the folder is never created.
        GENCHARGE_DATA_DIR=str(private_tmp / "data"),
        GENCHARGE_LOG_FORMAT="json",
        GENCHARGE_JWT_PRIVATE_KEY=generate_private_key_pem(),
        GENCHARGE_DATA_ENCRYPTION_KEY=generate_data_key(),
        GENCHARGE_BACKUP_ENCRYPTION_KEY=generate_data_key(),
        GENCHARGE_BOOTSTRAP_ADMIN_EMAIL=ADMIN_EMAIL,
        GENCHARGE_BOOTSTRAP_ADMIN_PASSWORD=ADMIN_PASSWORD,
        GENCHARGE_MESSAGE_SENDER="webhook",
        GENCHARGE_MESSAGE_WEBHOOK_URL="https://messages.example.invalid/send",
        GENCHARGE_PAYMENT_GATEWAY="razorpay",
        GENCHARGE_RAZORPAY_KEY_ID=KEY_ID,
        GENCHARGE_RAZORPAY_KEY_SECRET=KEY_SECRET,
        GENCHARGE_RAZORPAY_WEBHOOK_SECRET=WEBHOOK_SECRET,
        GENCHARGE_RAZORPAY_API_URL=standin.url,  # plain http: allowed to loopback only
        GENCHARGE_RAZORPAY_CHECKOUT_URL=CHECKOUT,
        GENCHARGE_SHUTDOWN_GRACE_SECONDS="5",
    )
    return env


def _register(channel: grpc.Channel) -> auth_pb.RegisterResponse:
    reply: auth_pb.RegisterResponse = auth_service_pb2_grpc.AuthServiceStub(channel).Register(
        auth_pb.RegisterRequest(
            name="Production Customer",
            email=f"customer-{uuid.uuid4().hex[:10]}@example.com",
            password="correct horse battery staple 11",
            user_type=common_pb2.USER_TYPE_PREPAID,
        ),
        timeout=HANG_SECONDS,
    )
    return reply


def _top_up(channel: grpc.Channel, token: str, request_id: str) -> wallet_pb.TopUpResponse:
    reply: wallet_pb.TopUpResponse = wallet_service_pb2_grpc.WalletServiceStub(channel).TopUp(
        wallet_pb.TopUpRequest(
            request_id=request_id,
            amount=common_pb2.Money(units_minor=50_000, currency_code="INR"),
            payment_method=common_pb2.PAYMENT_METHOD_UPI,
            payment_details=common_pb2.PaymentDetails(
                upi=common_pb2.UpiPayment(vpa="customer@okbank")
            ),
        ),
        metadata=[("authorization", f"Bearer {token}")],
        timeout=HANG_SECONDS,
    )
    return reply


def _admin_login(channel: grpc.Channel) -> str:
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    reply = stub.Login(
        auth_pb.LoginRequest(
            email=ADMIN_EMAIL,
            password=ADMIN_PASSWORD,
            principal_type=common_pb2.PRINCIPAL_TYPE_ADMIN,
        ),
        timeout=HANG_SECONDS,
    )
    challenge = reply.mfa_challenge
    secret = challenge.enrolment.secret  # first login: enrol an authenticator
    assert secret
    tokens = stub.VerifyMfa(
        auth_pb.VerifyMfaRequest(
            challenge_token=challenge.challenge_token,
            totp_code=totp.current_code(secret, datetime.now(UTC)),
        ),
        timeout=HANG_SECONDS,
    )
    me = stub.GetMe(
        auth_pb.GetMeRequest(),
        metadata=[("authorization", f"Bearer {tokens.access_token}")],
        timeout=HANG_SECONDS,
    )
    email: str = me.admin.email
    return email


def test_production_serves_with_razorpay_and_stops_cleanly(
    production_env: dict[str, str], standin: RazorpayStandIn, private_tmp: Path
) -> None:
    target = production_env["GENCHARGE_LISTEN"]
    log_path = private_tmp / "serve.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [GENCHARGE, "serve"], env=production_env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        _wait_serving(target, proc)
        with grpc.insecure_channel(target) as channel:
            customer = _register(channel)
            request_id = str(uuid.uuid4())
            reply = _top_up(channel, customer.tokens.access_token, request_id)
            # Pending at Razorpay: one order, for our reference, and the checkout page.
            assert reply.transaction.status == transaction_pb2.TRANSACTION_STATUS_PENDING
            (order,) = standin.orders
            order_id = order["id"]
            reference = f"topup:user:{customer.user.user_id}:{request_id}"
            assert order["notes"]["reference"] == reference
            assert order["receipt"] == order_receipt(reference)
            assert (order["amount"], order["currency"]) == (50_000, "INR")
            assert reply.transaction.payment_transaction_id == order_id
            assert reply.pending_payment.redirect_url == (
                f"https://pay.example.com/checkout?order_id={order_id}&key={KEY_ID}"
            )
            # The same request again: the same answer, no second order.
            assert _top_up(channel, customer.tokens.access_token, request_id) == reply
            assert len(standin.orders) == 1
            assert all(r.authenticated for r in standin.requests)
            assert _admin_login(channel) == ADMIN_EMAIL
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STOP_SECONDS) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    listening = next(line for line in lines if line.get("msg") == "grpc server listening")
    assert listening["gateway"] == "razorpay"
    assert lines[-1]["msg"] == "stopped"
    assert "Traceback" not in text
    for secret in (
        KEY_SECRET,
        WEBHOOK_SECRET,
        ADMIN_PASSWORD,
        production_env["GENCHARGE_DATA_ENCRYPTION_KEY"],
        production_env["GENCHARGE_BACKUP_ENCRYPTION_KEY"],
        production_env["GENCHARGE_JWT_PRIVATE_KEY"].splitlines()[1],
    ):
        assert secret not in text
    assert not Path(production_env["GENCHARGE_DATA_DIR"]).exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"GENCHARGE_PAYMENT_GATEWAY": "sandbox"},
            "gencharge: GENCHARGE_PAYMENT_GATEWAY=sandbox is for development and tests",
        ),
        (
            {"GENCHARGE_RAZORPAY_KEY_SECRET": ""},
            "gencharge: GENCHARGE_PAYMENT_GATEWAY=razorpay needs GENCHARGE_RAZORPAY_KEY_SECRET",
        ),
        (
            {"GENCHARGE_BACKUP_ENCRYPTION_KEY": ""},
            "gencharge: GENCHARGE_BACKUP_ENCRYPTION_KEY is required in production",
        ),
    ],
    ids=["sandbox", "no-key-secret", "no-backup-key"],
)
def test_production_refuses_to_start_without_a_real_gateway(
    production_env: dict[str, str], change: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [GENCHARGE, "serve"],
        env={**production_env, **change},
        capture_output=True,
        timeout=STOP_SECONDS,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr
    said = [
        line
        for line in stderr.splitlines()
        if not line.startswith("{") and not line.startswith("GenCharge gRPC service on")
    ]
    assert len(said) == 1 and said[0].startswith(message), stderr
    assert WEBHOOK_SECRET not in stderr and ADMIN_PASSWORD not in stderr
