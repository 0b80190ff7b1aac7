"""Load-generating workers. Each runs in its own process (multiprocessing, spawn) with
its own asyncio loop and ``channels`` gRPC connections to the server (one unless the
server runs several worker processes: the kernel spreads connections, not calls, over
them), and returns what it measured. Callers and streams take the connections in turn.

All workers of a phase start at the same wall-clock instant (``start_at``) after a
short warm-up of their own (channel connected, a few calls made), run for ``duration``
seconds, and count only the calls that completed inside that window.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gencharge.v1 import recharge_service_pb2 as pb
from gencharge.v1 import recharge_service_pb2_grpc

WARMUP_CALLS = 5
#: Batch items a client keeps sent but unanswered (the server works on 32 at a time).
BATCH_CLIENT_WINDOW = 256
_CODE_NAMES = {status.value[0]: status.name for status in grpc.StatusCode}


@dataclass(frozen=True)
class Job:
    kind: str  # "health" | "recharge" | "batch"
    target: str
    token: str
    concurrency: int  # coroutines (health, recharge) or streams (batch) in this process
    start_at: float  # time.time() when measuring starts
    duration: float
    user_ids: tuple[int, ...] = ()
    plan_id: int = 0
    seed: int = 0
    channels: int = 1


@dataclass
class Result:
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    #: Latencies (seconds) of the calls completed inside the window (not for batch).
    latencies: list[float] = field(default_factory=list)
    #: Calls or items completed after the window (they still count for the ledger).
    late: int = 0

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


def run(job: Job) -> Result:
    """Process entry point (picklable)."""
    return asyncio.run(_run(job))


async def _run(job: Job) -> Result:
    # A local subchannel pool: otherwise channels to one target share one connection.
    options = [("grpc.max_concurrent_streams", 1000), ("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(job.target, options=options) for _ in range(job.channels)]
    try:
        await asyncio.gather(*(channel.channel_ready() for channel in channels))
        if job.kind == "health":
            return await _loops(job, [_HealthCall(channel) for channel in channels])
        if job.kind == "recharge":
            return await _loops(job, [_RechargeCall(channel, job) for channel in channels])
        if job.kind == "batch":
            return await _batch(channels, job)
        raise ValueError(f"unknown job kind {job.kind}")
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))


def _metadata(job: Job) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {job.token}"),)


async def _until_start(job: Job) -> None:
    await asyncio.sleep(max(0.0, job.start_at - time.time()))


async def _closed_loop(job: Job, result: Result, make_call: _CallMaker, rng: random.Random) -> None:
    """One caller: the next call starts when the previous one answered."""
    for _ in range(WARMUP_CALLS):
        await make_call(rng)
    await _until_start(job)
    end = job.start_at + job.duration
    while True:
        started = time.perf_counter()
        code = await make_call(rng)
        now = time.time()
        if now > end:
            result.late += 1 if code == "OK" else 0
            return
        if code == "OK":
            result.ok += 1
            result.latencies.append(time.perf_counter() - started)
        else:
            result.error(code)


class _CallMaker:
    async def __call__(self, rng: random.Random) -> str:  # pragma: no cover - protocol
        raise NotImplementedError


class _HealthCall(_CallMaker):
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = health_pb2_grpc.HealthStub(channel)
        self._request = health_pb2.HealthCheckRequest()

    async def __call__(self, rng: random.Random) -> str:
        try:
            await self._stub.Check(self._request)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return "OK"


class _RechargeCall(_CallMaker):
    def __init__(self, channel: grpc.aio.Channel, job: Job) -> None:
        self._stub = recharge_service_pb2_grpc.RechargeServiceStub(channel)
        self._job = job
        self._metadata = _metadata(job)

    async def __call__(self, rng: random.Random) -> str:
        request = pb.RechargeRequest(
            request_id=uuid.uuid4().hex,
            user_id=rng.choice(self._job.user_ids),
            plan_id=self._job.plan_id,
        )
        try:
            await self._stub.Recharge(request, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return "OK"


async def _loops(job: Job, callers: list[_CallMaker]) -> Result:
    result = Result()
    await asyncio.gather(
        *(
            _closed_loop(job, result, callers[i % len(callers)], random.Random(job.seed * 1000 + i))
            for i in range(job.concurrency)
        )
    )
    return result


async def _batch(channels: list[grpc.aio.Channel], job: Job) -> Result:
    result = Result()
    await asyncio.gather(
        *(_one_stream(channels[i % len(channels)], job, result, i) for i in range(job.concurrency))
    )
    return result


async def _one_stream(channel: grpc.aio.Channel, job: Job, result: Result, number: int) -> None:
    """One BatchRecharge stream: items written while fewer than BATCH_CLIENT_WINDOW are
    unanswered; writing stops at the end of the window, the rest is drained."""
    rng = random.Random(job.seed * 1000 + number)
    stub = recharge_service_pb2_grpc.RechargeServiceStub(channel)
    call = stub.BatchRecharge(metadata=_metadata(job))
    room = asyncio.Semaphore(BATCH_CLIENT_WINDOW)
    end = job.start_at + job.duration

    async def write() -> None:
        # Items answered before the window opens warm the stream up (not counted).
        while time.time() < end:
            await room.acquire()
            await call.write(
                pb.BatchRechargeRequest(
                    request_id=uuid.uuid4().hex,
                    user_id=rng.choice(job.user_ids),
                    plan_id=job.plan_id,
                )
            )
        await call.done_writing()

    writer = asyncio.create_task(write())
    async for response in call:
        room.release()
        now = time.time()
        if response.WhichOneof("result") == "error":
            result.error("item:" + _CODE_NAMES.get(response.error.code, str(response.error.code)))
        elif now < job.start_at:
            continue
        elif now <= end:
            result.ok += 1
        else:
            result.late += 1
    await writer
