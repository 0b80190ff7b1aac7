"""A TCP proxy for plaintext gRPC (HTTP/2) that can lose answers on purpose.

The SDK tests need the worst network failure a money call can meet: the server did the
work (a recharge debited the wallet) but the client never hears back. This proxy
forwards bytes both ways and reads the server's HTTP/2 frames; once armed it cuts the
connection (both sides, at once) instead of forwarding:

- ``arm(n)``: the next ``n`` HEADERS frames the server sends on a stream (a response's
  headers, which the server sends only once the handler has its answer, or an error's
  trailers), one connection cut per frame;
- ``arm_data(k)``: when the server sends its ``k``-th DATA frame from now (a streamed
  response message: e.g. the k-th BatchRecharge result), once.

The client sees UNAVAILABLE; the server has finished the call. Tests in other
processes (the TypeScript SDK's node tests) arm it over a control port, one command per
line, each answered with one line:

    arm <n>       -> ok
    arm-data <k>  -> ok
    dropped       -> <connections cut so far>
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

FRAME_HEADER_BYTES = 9
FRAME_DATA = 0x0
FRAME_HEADERS = 0x1


class H2Proxy:
    """Proxy 127.0.0.1:``port`` to ``host``:``target_port``; see the module docstring."""

    def __init__(self, host: str, target_port: int) -> None:
        self.host = host
        self.target_port = target_port
        self.port = 0
        self.control_port = 0
        self.dropped = 0
        self._headers_armed = 0
        self._data_countdown = 0
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> H2Proxy:
        proxy = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        control = await asyncio.start_server(self._on_control, "127.0.0.1", 0)
        self._servers = [proxy, control]
        self.port = proxy.sockets[0].getsockname()[1]
        self.control_port = control.sockets[0].getsockname()[1]
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def arm(self, n: int = 1) -> None:
        """Cut the connection on each of the server's next ``n`` response HEADERS."""
        self._headers_armed += n

    def arm_data(self, k: int) -> None:
        """Cut the connection when the server sends its ``k``-th DATA frame from now."""
        if k < 1:
            raise ValueError("k counts frames from 1")
        self._data_countdown = k

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        for server in self._servers:
            await server.wait_closed()

    async def __aenter__(self) -> H2Proxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connections ----------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_client(
        self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter
    ) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            c_writer.transport.abort()
            return
        pair = (c_writer, s_writer)
        self._writers.update(pair)
        self._spawn(self._pump_raw(c_reader, s_writer, pair))
        self._spawn(self._pump_frames(s_reader, c_writer, pair))

    def _cut(self, pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        for writer in pair:
            writer.transport.abort()
            self._writers.discard(writer)

    async def _pump_raw(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        """Client to server: bytes as they come."""
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._cut(pair)

    def _should_cut(self, frame_type: int, stream_id: int) -> bool:
        if stream_id == 0:
            return False
        if frame_type == FRAME_HEADERS and self._headers_armed > 0:
            self._headers_armed -= 1
            return True
        if frame_type == FRAME_DATA and self._data_countdown > 0:
            self._data_countdown -= 1
            return self._data_countdown == 0
        return False

    async def _pump_frames(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        """Server to client: whole HTTP/2 frames, unless a cut is due."""
        try:
            while True:
                header = await reader.readexactly(FRAME_HEADER_BYTES)
                length = int.from_bytes(header[0:3], "big")
                frame_type = header[3]
                stream_id = int.from_bytes(header[5:9], "big") & 0x7FFF_FFFF
                payload = await reader.readexactly(length)
                if self._should_cut(frame_type, stream_id):
                    self.dropped += 1
                    return
                writer.write(header + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._cut(pair)

    # -- control port ---------------------------------------------------------------

    async def _on_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                words = line.decode("ascii", "replace").split()
                writer.write((self._command(words) + "\n").encode())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def _command(self, words: list[str]) -> str:
        try:
            match words:
                case ["arm", n]:
                    self.arm(int(n))
                    return "ok"
                case ["arm-data", k]:
                    self.arm_data(int(k))
                    return "ok"
                case ["dropped"]:
                    return str(self.dropped)
        except ValueError as exc:
            return f"error {exc}"
        return "error unknown command"
