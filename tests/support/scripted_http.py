"""A scripted HTTP/1.1 server on a real socket: each request (head + Content-Length body) gets
the bytes a script returns — well-formed or not — for testing clients (the simulator's)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

Script = Callable[[int, bytes], bytes]
#: An answer ending with this is sent without it, then the server closes the connection.
CLOSE = b"<close>"


class Scripted:
    """A TCP server that reads each HTTP request (head + Content-Length body) and writes what
    ``script(request_number, body)`` returns; b"" closes the connection without an answer, and so
    does an answer ending with :data:`CLOSE`, after it."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[tuple[int, bytes, bytes]] = []  # (connection number, head, body)
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append((conn, head, body))
                answer = self.script(len(self.requests), body)
                if not answer:
                    break
                closing = answer.endswith(CLOSE)
                writer.write(answer.removesuffix(CLOSE))
                await writer.drain()
                if closing or b"Connection: close" in answer or answer.startswith(b"HTTP/1.0"):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[tuple[Scripted, str]]:
    srv = Scripted(script)
    server = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield srv, f"http://127.0.0.1:{port}/com.snowplowanalytics.snowplow/tp2"
    finally:
        server.close()
        await server.wait_closed()
