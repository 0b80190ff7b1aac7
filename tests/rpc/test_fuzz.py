"""Bad input never reaches INTERNAL: property-based calls to every implemented RPC.

For every RPC of the contract whose service has a servicer (the list is derived from
server/rpc/services.py and the descriptors, never written by hand; RPCs that answer
UNIMPLEMENTED are skipped at run time), Hypothesis builds request messages from the
RPC's input descriptor (tests/helpers/protofuzz.py: edge integers, huge timestamps,
NUL and other odd characters, unknown enum numbers, nested and repeated fields, oneofs,
oversized field masks, forged page tokens) and calls the real server as anonymous, a
customer, an admin or a service account. No answer may be INTERNAL or UNKNOWN, nor
may a streamed item carry such a ``google.rpc.Status``.

- ``GENCHARGE_FUZZ_EXAMPLES`` sets the examples per RPC (default 25: ``make test``);
  ``make fuzz`` runs 10,000 per RPC.
- The seed is printed (and named in every failure); replay it with
  ``GENCHARGE_FUZZ_SEED=<seed>`` (``GENCHARGE_TEST_SEED`` works too).
- ``GENCHARGE_FUZZ_RPCS=AuthService/Register,WalletService`` limits the run to RPCs
  whose path contains one of the comma-separated parts; ``GENCHARGE_FUZZ_SHRINK=0``
  reports a failure as found, without shrinking it first (quicker triage).

Hypothesis runs in a worker thread and sends each call to the test's event loop, where
the server and the channel live; one server (fresh databases of its own) serves the
whole module.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import time
import traceback
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory, text_format
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from sqlalchemy import text

from gencharge.v1 import common_pb2
from server.auth.scopes import SCOPES
from server.core.logs import request_id_var
from server.rpc.services import SERVICES
from tests.helpers.auth import PASSWORD, Actor, create_admin, create_service, register_user
from tests.helpers.clock import HANG_SECONDS
from tests.helpers.money import fund, make_offer, make_plan
from tests.helpers.protofuzz import messages
from tests.helpers.rpc import details_of

EXAMPLES = int(os.environ.get("GENCHARGE_FUZZ_EXAMPLES") or 25)
SEED = int(
    os.environ.get("GENCHARGE_FUZZ_SEED")
    or os.environ.get("GENCHARGE_TEST_SEED")
    or random.SystemRandom().randrange(2**32)
)
SHRINK = os.environ.get("GENCHARGE_FUZZ_SHRINK", "1") != "0"
ONLY = [part for part in os.environ.get("GENCHARGE_FUZZ_RPCS", "").split(",") if part]
KINDS = ("anonymous", "customer", "admin", "service")
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
FORBIDDEN_CODES = {code_pb2.INTERNAL, code_pb2.UNKNOWN}
FORBIDDEN_NAMES = {"INTERNAL", "UNKNOWN"}
#: What grpcio's asyncio client reports when it loses the server's status (ServerOutcomes).
CLIENT_ARTEFACT = "Internal error from Core"
#: Requests of a client-streaming RPC per example.
MAX_STREAM_ITEMS = 4


@dataclass(frozen=True)
class Rpc:
    path: str
    method: MethodDescriptor

    @property
    def input(self) -> Descriptor:
        return self.method.input_type


def _contract() -> Iterator[Rpc]:
    pool = descriptor_pool.Default()
    for spec in SERVICES:
        if spec.factory is None:
            continue  # served by the generated base servicer: every RPC UNIMPLEMENTED
        service = pool.FindServiceByName(spec.full_name)
        for method in service.methods:
            rpc = Rpc(f"/{service.full_name}/{method.name}", method)
            if not ONLY or any(part in rpc.path for part in ONLY):
                yield rpc


RPCS = list(_contract())


def _unimplemented(running: Any) -> set[str]:
    assert running.app is not None
    return {path for spec in SERVICES for path in spec.unimplemented(spec.build(running.app))}


class Principals:
    """Anonymous, a funded customer, an admin and a service account; a session that a
    fuzzed call ended (Logout, RevokeSession...) is renewed before the next call."""

    def __init__(self, channel: grpc.aio.Channel, resources: Any) -> None:
        self.channel = channel
        self.resources = resources
        self.actors: dict[str, Actor] = {}
        self.plan_ids: list[int] = []
        self.offer_ids: list[int] = []

    async def start(self) -> Principals:
        # Plans and offers to buy, one of them free (a 100% discount).
        self.plan_ids = [
            await make_plan(self.resources, price=price) for price in ("10.00", "199.00")
        ]
        self.offer_ids = [
            await make_offer(self.resources, type_name="discount", discount_percent=percent)
            for percent in (Decimal(10), Decimal(100))
        ]
        customer = await register_user(self.channel)
        await fund(self.resources, customer.user_id, "100000.00")
        self.actors = {
            "customer": customer,
            "admin": await create_admin(self.channel, self.resources, role_name="Admin"),
            "service": await create_service(self.channel, self.resources, list(SCOPES)),
        }
        return self

    async def reset(self, server: Any) -> None:
        """Undo what earlier sweeps' successful calls changed that would keep this sweep
        from reaching its handler: the reference roles' permissions (a fuzzed
        RevokePermission can take the Admin role's away), and the three identities (a
        fuzzed BlockUser, UpdateAdmin or DisableServiceAccount can lock one out)."""
        from server.ops import seed

        await seed.load_reference_postgres(self.resources.engine)
        server.app.security.matrix.invalidate()
        for kind in ("customer", "admin", "service"):
            await self.renew(kind)

    def metadata(self, kind: str) -> tuple[tuple[str, str], ...] | None:
        actor = self.actors.get(kind)
        return actor.metadata if actor is not None else None

    async def renew(self, kind: str) -> None:
        # Fuzzed logins from this address may have used up its brute-force budget.
        async with self.resources.db.transaction() as conn:
            await conn.execute(text("DELETE FROM auth_throttle"))
        if kind == "customer":
            self.actors["customer"] = fresh = await register_user(self.channel)
            await fund(self.resources, fresh.user_id, "100000.00")
        elif kind == "admin":
            # A new admin: the old one's TOTP codes are single-use and time-bound.
            self.actors["admin"] = await create_admin(self.channel, self.resources, "Admin")
        elif kind == "service":
            self.actors["service"] = await create_service(
                self.channel, self.resources, list(SCOPES)
            )

    def hints(self) -> dict[str, st.SearchStrategy[Any]]:
        """Realistic values mixed into fields of these names."""
        customer = self.actors["customer"]
        names = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
        inr = st.builds(
            common_pb2.Money, units_minor=st.integers(1, 100_000), currency_code=st.just("INR")
        )
        return {
            "user_id": st.sampled_from([customer.user_id, 1, 2, 3]),
            "plan_id": st.sampled_from(self.plan_ids),
            "offer_id": st.sampled_from(self.offer_ids),
            "phone_number": st.one_of(
                st.sampled_from([customer.phone_number, "+919876543210"]),
                st.integers(6_000_000_000, 9_999_999_999).map(str),
            ),
            "email": st.one_of(
                st.just(customer.email), st.uuids().map(lambda u: f"{u.hex[:12]}@example.com")
            ),
            "password": st.sampled_from([PASSWORD, "short"]),
            "new_password": st.sampled_from([PASSWORD + "!", "short"]),
            "name": st.sampled_from(["Asha Rao", "Zoë Ł"]),
            "user_type": st.sampled_from(
                [common_pb2.USER_TYPE_PREPAID, common_pb2.USER_TYPE_POSTPAID]
            ),
            "referral_code": st.just(""),
            "request_id": st.uuids().map(str),
            "currency_code": st.just("INR"),
            "units_minor": st.integers(1, 100_000),
            "price": inr,
            "amount": inr,
            "validity_days": st.integers(1, 3650),
            "offer_validity_days": st.integers(0, 3650),
            "percent_bps": st.integers(1, 10_000),
            "plan_name": names,
            "offer_name": names,
            "group_name": names,
            "offer_type_name": names,
            "page_token": st.one_of(st.just(""), _forged_tokens()),
        }


def _forged_tokens() -> st.SearchStrategy[str]:
    """Page tokens a client could forge from the old, unsigned format."""
    keys = st.one_of(st.integers(), st.text(max_size=8), st.none(), st.floats())
    moments = st.sampled_from(["2024-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00", "x"])

    def encode(after: Any, fingerprint: str) -> str:
        raw = json.dumps({"a": after, "f": fingerprint}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    after = st.one_of(st.tuples(moments, keys).map(list), keys)
    return st.builds(encode, after, st.text(alphabet="0123456789abcdef", max_size=16))


class ServerOutcomes(logging.Handler):
    """What the server itself answered each call, by request id, from its access log
    (server/rpc/interceptors/request.py), with the traceback of any unhandled error.

    The client's view is not enough for client-streaming calls: grpcio's asyncio client
    replaces the server's status with INTERNAL "Internal error from Core" when a
    request write fails because the server has already ended the call (an auth
    refusal while items are still being sent: grpc/grpc issue 36066)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.INFO)
        self.loop = loop
        self.codes: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.arrived: dict[str, asyncio.Event] = {}

    def emit(self, record: logging.LogRecord) -> None:
        request_id = request_id_var.get()
        if not request_id.startswith("fuzz-"):
            return
        if record.getMessage() == "unhandled error" and record.exc_info:
            self.errors[request_id] = "".join(traceback.format_exception(*record.exc_info))
        elif record.getMessage() == "rpc finished":
            self.codes[request_id] = str(getattr(record, "code", ""))
            self.arrived.setdefault(request_id, asyncio.Event()).set()

    async def code(self, request_id: str) -> str:
        event = self.arrived.setdefault(request_id, asyncio.Event())
        await asyncio.wait_for(event.wait(), HANG_SECONDS)  # a bound on a hang only
        del self.arrived[request_id]
        return self.codes.pop(request_id)


@pytest.fixture(scope="module")
async def server_outcomes() -> AsyncIterator[ServerOutcomes]:
    logger = logging.getLogger("gencharge.rpc")
    saved = (logger.level, logger.propagate)
    outcomes = ServerOutcomes(asyncio.get_running_loop())
    # Every call's line, kept here rather than in pytest's report of each test.
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(outcomes)
    try:
        yield outcomes
    finally:
        logger.removeHandler(outcomes)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


@pytest.fixture(scope="module")
async def fuzz_channel(module_grpc_server: Any) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{module_grpc_server.port}") as channel:
        yield channel


@pytest.fixture(scope="module")
async def principals(module_grpc_server: Any, fuzz_channel: grpc.aio.Channel) -> Principals:
    return await Principals(fuzz_channel, module_grpc_server.resources).start()


@pytest.fixture(scope="module")
def unimplemented(module_grpc_server: Any) -> set[str]:
    return _unimplemented(module_grpc_server)


def test_fuzzed_rpcs_are_derived_from_the_contract() -> None:
    """The list covers every RPC of every built service, and nothing else."""
    if ONLY:
        pytest.skip("GENCHARGE_FUZZ_RPCS limits the run")
    built = {spec.full_name for spec in SERVICES if spec.factory is not None}
    assert {"gencharge.v1.AuthService", "gencharge.v1.RechargeService"} <= built
    expected = {
        f"/{name}/{m.name}"
        for name in built
        for m in descriptor_pool.Default().FindServiceByName(name).methods
    }
    assert {rpc.path for rpc in RPCS} == expected
    assert len(RPCS) > 40


@dataclass
class Answer:
    code: grpc.StatusCode
    reason: str = ""
    message: str = ""
    bad_items: tuple[str, ...] = ()
    served: bool = True
    server_code: str = ""
    server_error: str = ""

    def problem(self, client_streaming: bool) -> str | None:
        """Why this answer breaks the rule, or None."""
        if self.server_code in FORBIDDEN_NAMES:
            return f"the server answered {self.server_code}"
        if self.bad_items:
            return f"streamed items failed: {list(self.bad_items)}"
        if self.code in FORBIDDEN:
            if client_streaming and self.message == CLIENT_ARTEFACT:
                return None  # the client's own artefact (see ServerOutcomes)
            return f"the client saw {self.code.name} {self.message!r}"
        return None


def _bad_statuses(message: Message, where: str = "") -> Iterator[str]:
    """google.rpc.Status values with INTERNAL/UNKNOWN anywhere in a response message."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        values = value if field.is_repeated else [value]
        for item in values:
            if not isinstance(item, Message):
                continue
            path = f"{where}{field.name}"
            if field.message_type.full_name == "google.rpc.Status":
                if item.code in FORBIDDEN_CODES:  # type: ignore[attr-defined]
                    yield f"{path}: {code_pb2.Code.Name(item.code)} {item.message}"  # type: ignore[attr-defined]
            else:
                yield from _bad_statuses(item, f"{path}.")


async def _call(
    channel: grpc.aio.Channel,
    rpc: Rpc,
    requests: list[Message],
    principal: tuple[tuple[str, str], ...] | None,
    outcomes: ServerOutcomes,
) -> Answer:
    request_id = f"fuzz-{uuid.uuid4().hex}"
    answer = await _exchange(
        channel, rpc, requests, (*(principal or ()), ("x-request-id", request_id))
    )
    if answer.served or answer.message == CLIENT_ARTEFACT:
        answer.server_code = await outcomes.code(request_id)
        answer.server_error = outcomes.errors.pop(request_id, "")
    # else: refused before any handler ran (a message over the server's size limit),
    # so no server code to wait for; the client's code is still checked.
    return answer


async def _exchange(
    channel: grpc.aio.Channel,
    rpc: Rpc,
    requests: list[Message],
    metadata: tuple[tuple[str, str], ...],
) -> Answer:
    method = rpc.method
    serializer = type(requests[0]).SerializeToString
    deserializer = message_factory.GetMessageClass(method.output_type).FromString
    kwargs = {"request_serializer": serializer, "response_deserializer": deserializer}
    bad: list[str] = []
    try:
        if method.client_streaming:

            async def feed() -> AsyncIterator[Message]:
                for request in requests:
                    yield request

            if method.server_streaming:
                call = channel.stream_stream(rpc.path, **kwargs)(
                    feed(), metadata=metadata, timeout=HANG_SECONDS
                )
                async for response in call:
                    bad += _bad_statuses(response)
            else:
                response = await channel.stream_unary(rpc.path, **kwargs)(
                    feed(), metadata=metadata, timeout=HANG_SECONDS
                )
                bad += _bad_statuses(response)
        elif method.server_streaming:
            call = channel.unary_stream(rpc.path, **kwargs)(
                requests[0], metadata=metadata, timeout=HANG_SECONDS
            )
            async for response in call:
                bad += _bad_statuses(response)
        else:
            response = await channel.unary_unary(rpc.path, **kwargs)(
                requests[0], metadata=metadata, timeout=HANG_SECONDS
            )
            bad += _bad_statuses(response)
    except grpc.aio.AioRpcError as error:
        # Our interceptor sends the request id back with every status it makes.
        served = any(key == "x-request-id" for key, _ in error.trailing_metadata() or ())
        try:
            details = details_of(error)
        except AssertionError:  # no readable google.rpc.Status (e.g. trailers too big)
            bad.append(f"unreadable status: {error.code().name} {error.details()}")
            return Answer(error.code(), "", error.details() or "", tuple(bad), served=True)
        return Answer(error.code(), details.reason, details.message, tuple(bad), served=served)
    return Answer(grpc.StatusCode.OK, bad_items=tuple(bad), served=True)


def _show(requests: list[Message]) -> str:
    text = "\n---\n".join(text_format.MessageToString(r, as_utf8=False) for r in requests)
    return text if len(text) < 4000 else text[:4000] + f"... ({len(text)} characters)"


_SESSION_GONE = {"SESSION_ENDED", "INVALID_TOKEN"}


@pytest.mark.parametrize("rpc", RPCS, ids=lambda rpc: rpc.path.removeprefix("/gencharge.v1."))
async def test_bad_input_never_reaches_internal(
    rpc: Rpc,
    module_grpc_server: Any,
    fuzz_channel: grpc.aio.Channel,
    principals: Principals,
    unimplemented: set[str],
    server_outcomes: ServerOutcomes,
) -> None:
    if rpc.path in unimplemented:
        pytest.skip(f"{rpc.path} answers UNIMPLEMENTED")
    await principals.reset(module_grpc_server)
    loop = asyncio.get_running_loop()
    print(f"fuzz seed {SEED} (replay: GENCHARGE_FUZZ_SEED={SEED}); {EXAMPLES} examples")
    request = messages(rpc.input, hints=principals.hints())
    count = st.integers(1, MAX_STREAM_ITEMS) if rpc.method.client_streaming else st.just(1)
    codes: Counter[str] = Counter()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=HANG_SECONDS * 2)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
        phases=list(Phase) if SHRINK else [p for p in Phase if p is not Phase.shrink],
    )
    @seed(SEED)
    @given(kind=st.sampled_from(KINDS), data=st.data())
    def check(kind: str, data: st.DataObject) -> None:
        n = data.draw(count, label="items")
        requests = [data.draw(request, label="request") for _ in range(n)]
        answer = run(_call(fuzz_channel, rpc, requests, principals.metadata(kind), server_outcomes))
        codes[answer.server_code or f"client {answer.code.name}"] += 1
        if kind != "anonymous" and answer.reason in _SESSION_GONE:
            run(principals.renew(kind))  # the call ended its own session
        problem = answer.problem(rpc.method.client_streaming)
        assert problem is None, (
            f"{rpc.path} as {kind}: {problem} (seed {SEED}) for:\n{_show(requests)}\n"
            f"{answer.server_error}"
        )

    started = time.perf_counter()
    await asyncio.to_thread(check)
    elapsed = time.perf_counter() - started
    total = sum(codes.values())
    print(
        f"{rpc.path}: {total} calls in {elapsed:.1f} s "
        f"({total / elapsed if elapsed else 0:.0f}/s); "
        + ", ".join(f"{code} {n}" for code, n in codes.most_common())
    )
    assert total >= 1
