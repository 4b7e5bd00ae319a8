"""A TCP proxy on loopback that delays every chunk by a fixed time each way: a LAN's latency
where netem is not available (the bench's figure 9). Bandwidth is not limited; order is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time


class DelayProxy:
    def __init__(self, upstream_port: int, delay_s: float = 0.001) -> None:
        self.upstream_port = upstream_port
        self.delay = delay_s
        self.paused = False  # refuse connections: the NAS is "down"
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)
        self._ready = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> DelayProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            server = await asyncio.start_server(self._client, sock=self._sock)
            self._ready.set()
            async with server:
                await server.serve_forever()

        with contextlib.suppress(asyncio.CancelledError, RuntimeError):
            self._loop.run_until_complete(serve())

    def drop_all(self) -> None:
        """Closes every open connection (with ``paused``: a NAS that went away)."""
        def close() -> None:
            for writer in list(self._writers):
                writer.close()
        self._loop.call_soon_threadsafe(close)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.paused:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        for w in (writer, up_writer):
            w.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP,
                                                            socket.TCP_NODELAY, 1)
            self._writers.add(w)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(deliver())
        try:
            while data := await reader.read(1 << 20):
                queue.put_nowait((time.monotonic() + self.delay, data))
        finally:
            queue.put_nowait((0.0, b""))
            await asyncio.gather(sender, return_exceptions=True)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(lambda: [t.cancel() for t in
                                                 asyncio.all_tasks(self._loop)])
        self._thread.join(5)


if __name__ == "__main__":  # python scripts/delay_proxy.py UPSTREAM_PORT [DELAY_S]: prints its port
    import sys

    proxy = DelayProxy(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.001)
    proxy.start()
    print(proxy.port, flush=True)
    sys.stdin.read()  # until the parent closes it
