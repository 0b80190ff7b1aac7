"""The TypeScript SDK (clients/typescript) against the real server.

``npm test`` (tsc, then Node's test runner over clients/typescript/test) runs as an
asyncio subprocess while this test's event loop keeps serving: the real gRPC server
(``grpc_server``), an answer-losing proxy in front of it (tests/clients/h2proxy.py, armed
by the node tests over its control port) and a small control port of our own (below) for
what a client cannot do through the API: create admins and service accounts, fund
wallets, make plans, read the ledger, mint an expired token, move the server's clocks,
fail a payment's recording and run the recovery job. The node tests get the addresses
through the environment and fail this test with their output if any of them fails.

Time: the server's cache clock (``server_clock``) and the clock its tokens are issued and
checked with (real UTC plus a shift, ``SteppedUtcClock``) move only on the node tests'
``advance_clock`` command, both at once: a token the client holds expires without a
wait, and nothing expires under a test by itself.

Control protocol: one JSON object per line, ``{"cmd": "...", ...}``, answered with one
line ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from server.admin import flows as admin_flows
from server.admin.staff import flows as staff_flows
from server.admin.staff.domain import NewServiceAccount
from server.auth import totp
from server.auth.tokens import TokenService
from server.ops.scheduler import Scheduler
from tests.clients.h2proxy import H2Proxy
from tests.clients.token_clock import advance, stepped_token_clock
from tests.helpers.auth import PASSWORD, latest_code, register_user, verify_contacts
from tests.helpers.clock import HANG_SECONDS, FakeClock, SteppedUtcClock
from tests.helpers.money import assert_ledger_balances, balance, fund, make_plan

REPO_ROOT = Path(__file__).resolve().parents[3]
CLIENT_DIR = REPO_ROOT / "clients" / "typescript"
#: The whole node run (build + every test file): a bound on a hang only.
NODE_TIMEOUT_SECONDS = 10 * HANG_SECONDS

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class Control:
    """The node tests' line-JSON control port into this test's server and databases."""

    def __init__(
        self, grpc_server: Any, resources: Any, clock: FakeClock, token_clock: SteppedUtcClock
    ) -> None:
        self.server = grpc_server
        self.resources = resources
        self.clock = clock
        self.token_clock = token_clock
        self.port = 0
        self._server: asyncio.Server | None = None
        self._recovery_clock = SteppedUtcClock()
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_server.port}")
        self.handlers: dict[str, Handler] = {
            "user": self.user,
            "fund": self.fund,
            "balance": self.balance,
            "ledger": self.ledger,
            "assert_ledger": self.assert_ledger,
            "plan": self.plan,
            "admin": self.admin,
            "totp": self.totp,
            "service": self.service,
            "otp": self.otp,
            "expired_token": self.expired_token,
            "advance_clock": self.advance_clock,
            "fail_next_recording": self.fail_next_recording,
            "recover": self.recover,
        }

    async def __aenter__(self) -> Control:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self._channel.close()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write((json.dumps(await self._answer(line)) + "\n").encode())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            handler = self.handlers[request.pop("cmd")]
            return {"ok": True, "result": await handler(request)}
        except Exception as exc:  # reported to the node test that asked
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    # --- commands ------------------------------------------------------------------

    async def user(self, args: dict[str, Any]) -> dict[str, Any]:
        """A registered customer (contacts verified if ``verify``), its wallet funded with
        ``rupees``. Every node test signs up from this one address: the brute-force
        counters (contact codes sent from it) are cleared after each sign-up."""
        actor = await register_user(self._channel)
        if args.get("verify", False):
            await verify_contacts(self._channel, self.resources, actor)
        async with self.resources.db.transaction() as conn:
            await conn.execute(text("DELETE FROM auth_throttle"))
        if args.get("rupees"):
            await fund(self.resources, actor.user_id, args["rupees"])
        return {
            "userId": actor.user_id,
            "email": actor.email,
            "phoneNumber": actor.phone_number,
            "password": actor.password,
        }

    async def fund(self, args: dict[str, Any]) -> None:
        await fund(self.resources, int(args["userId"]), args["rupees"])

    async def balance(self, args: dict[str, Any]) -> str:
        return str(await balance(self.resources, int(args["userId"])))

    async def ledger(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """The user's ledger rows, oldest first."""
        async with self.resources.db.read_only() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT txn_id, category, txn_type, amount, source, status,"
                        " payment_method FROM transactions WHERE user_id = :u ORDER BY txn_id"
                    ),
                    {"u": int(args["userId"])},
                )
            ).all()
        return [
            {
                "txnId": row.txn_id,
                "category": str(row.category),
                "type": str(row.txn_type),
                "amount": str(row.amount),
                "source": str(row.source),
                "status": str(row.status),
                "paymentMethod": str(row.payment_method),
            }
            for row in rows
        ]

    async def assert_ledger(self, args: dict[str, Any]) -> None:
        await assert_ledger_balances(self.resources)

    async def plan(self, args: dict[str, Any]) -> int:
        """A plan (``status`` "active" or "inactive"), visible to the server at once."""
        plan_id = await make_plan(
            self.resources,
            price=args.get("price", "10.00"),
            status=args.get("status", "active"),
            name=args.get("name"),
        )
        self.server.app.catalogue.invalidate()
        return plan_id

    async def admin(self, args: dict[str, Any]) -> dict[str, str]:
        """An admin (not logged in yet: the SDK's login enrols its TOTP)."""
        role = args.get("role", "Admin")
        email = f"{role.lower()}-{uuid.uuid4().hex[:8]}@example.com"
        await admin_flows.ensure_admin(
            self.resources.db, email=email, name=f"Test {role}", password=PASSWORD, role_name=role
        )
        return {"email": email, "password": PASSWORD}

    async def totp(self, args: dict[str, Any]) -> str:
        """The TOTP code of ``secret`` ``step`` 30-second steps from now."""
        moment = datetime.now(UTC) + timedelta(seconds=30 * int(args.get("step", 0)))
        return totp.current_code(args["secret"], moment)

    async def service(self, args: dict[str, Any]) -> dict[str, str]:
        created = await staff_flows.create_service_account(
            self.resources.db,
            NewServiceAccount(
                name=f"ts sdk {uuid.uuid4().hex[:8]}", scopes=tuple(args.get("scopes", ()))
            ),
        )
        return {"clientId": created.account.client_id, "clientSecret": created.client_secret}

    async def otp(self, args: dict[str, Any]) -> str:
        """The newest login code sent to ``phoneNumber``."""
        return await latest_code(self.resources, args["phoneNumber"], "login_otp")

    async def expired_token(self, args: dict[str, Any]) -> str:
        """An access token like ``accessToken`` (same principal, role and session), signed
        by the server's key, that expired an hour ago."""
        live: TokenService = self.server.security.tokens
        claims = live.verify(args["accessToken"])
        past = datetime.now(UTC) - timedelta(seconds=live.ttl_seconds + 3600)
        old = TokenService(
            live.keyring,
            issuer=live.issuer,
            audience=live.audience,
            ttl_seconds=live.ttl_seconds,
            clock=lambda: past,
        )
        token, _ = old.issue(
            principal_type=claims.principal_type,
            principal_id=claims.principal_id,
            role=claims.role,
            session_id=claims.session_id,
        )
        return token

    async def advance_clock(self, args: dict[str, Any]) -> None:
        """Move the server's clocks ``seconds`` ahead: its token clock (every access token
        issued before is then as old; past its lifetime it is refused as expired) and its
        cache clock (cached token claims and sessions are read afresh)."""
        advance(self.token_clock, self.clock, float(args["seconds"]))

    async def fail_next_recording(self, args: dict[str, Any]) -> None:
        """The next ledger row insert fails once (a database failure at the recording
        step of a gateway payment): the call answers UNAVAILABLE PAYMENT_NOT_RECORDED."""
        statements = [
            "CREATE SEQUENCE IF NOT EXISTS ts_fail_once_seq",
            "SELECT setval('ts_fail_once_seq', 1, false)",
            """CREATE OR REPLACE FUNCTION ts_fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                   IF nextval('ts_fail_once_seq') = 1 THEN
                       RAISE EXCEPTION 'injected failure at the recording step';
                   END IF;
                   RETURN NEW;
               END $$""",
            "DROP TRIGGER IF EXISTS ts_fail_once ON transactions",
            """CREATE TRIGGER ts_fail_once BEFORE INSERT ON transactions
               FOR EACH ROW EXECUTE FUNCTION ts_fail_once()""",
        ]
        async with self.resources.db.transaction() as conn:
            for statement in statements:
                await conn.execute(text(statement))

    async def recover(self, args: dict[str, Any]) -> int:
        """Run the payment recovery job past its grace period; the attempts it recorded."""
        scheduler = Scheduler(self.resources, self.server.app.recharger, clock=self._recovery_clock)
        self._recovery_clock.advance(
            float(self.resources.settings.payment_recovery_after_seconds) + 1
        )
        report = await scheduler.run_once()
        assert report.payments is not None, report
        return int(report.payments.recorded)


@contextlib.asynccontextmanager
async def node_environment(
    grpc_server: Any, resources: Any, clock: FakeClock
) -> AsyncIterator[dict[str, str]]:
    with stepped_token_clock(grpc_server) as token_clock:
        async with (
            H2Proxy("127.0.0.1", grpc_server.port) as proxy,
            Control(grpc_server, resources, clock, token_clock) as control,
        ):
            yield {
                **os.environ,
                "GENCHARGE_ADDRESS": f"http://127.0.0.1:{grpc_server.port}",
                "GENCHARGE_PROXY_ADDRESS": f"http://127.0.0.1:{proxy.port}",
                "GENCHARGE_PROXY_CONTROL_PORT": str(proxy.control_port),
                "GENCHARGE_TEST_CONTROL_PORT": str(control.port),
            }


async def run_node(env: dict[str, str], *args: str) -> tuple[int, str]:
    npm = shutil.which("npm")
    assert npm is not None, "npm is not installed"
    process = await asyncio.create_subprocess_exec(
        npm,
        *args,
        cwd=CLIENT_DIR,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), NODE_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        return -1, output.decode("utf-8", "replace") + "\n(timed out)"
    assert process.returncode is not None
    return process.returncode, output.decode("utf-8", "replace")


@pytest.fixture
def node_modules() -> Path:
    path = CLIENT_DIR / "node_modules"
    if not (path / ".bin" / "tsc").exists():
        pytest.fail(f"{path} is missing: run `make {path.relative_to(REPO_ROOT)}` (npm ci)")
    return path


async def test_typescript_sdk_against_the_real_server(
    node_modules: Path, grpc_server: Any, resources: Any, server_clock: FakeClock
) -> None:
    # server_clock: the server's caches run on a clock only `advance_clock` moves.
    async with node_environment(grpc_server, resources, server_clock) as env:
        code, output = await run_node(env, "test")
    assert code == 0, output
    print(output[-3000:])
    await assert_ledger_balances(resources)
