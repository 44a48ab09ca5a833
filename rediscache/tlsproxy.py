"""A TLS endpoint in front of a Redis that speaks no TLS.

The redis-server of the embedded server's wheel is built without TLS ("Missing implement
of connection type tls"), so :mod:`rediscache.server` serves ``rediss://`` through this
proxy when given a certificate: it accepts TLS connections on a TCP port, and relays the
bytes of each, unchanged, to the server's unix socket (or TCP port) and back. Redis sees
one plain connection per client connection: AUTH, ACL users, pub/sub, CLIENT TRACKING and
blocking commands work as they would on a TLS-built Redis, and closing either side closes
the other. With ``client_ca`` the proxy also requires client certificates signed by that
CA (mutual TLS), as Redis's ``tls-auth-clients yes`` does.

Costs: one more hop per round trip, through Python's asyncio (docs/security.md has the
measured latency); for development and tests, not for a production deployment, whose Redis
should do TLS itself.

Run as a process: ``python -m rediscache.tlsproxy --cert C --key K --port P --to SOCKET``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TlsEndpoint", "TlsProxy", "server_context"]

#: Bytes read from one side before they are written to the other.
_CHUNK = 1 << 16


@dataclass(frozen=True)
class TlsEndpoint:
    """What a TLS proxy serves: its certificate chain and key (PEM files), the CA whose
    client certificates it requires (None: clients need none), where it listens, and the
    Redis it relays to (a unix socket path, or ``host:port``)."""

    cert: Path
    key: Path
    target: str
    host: str = "127.0.0.1"
    port: int = 0
    client_ca: Path | None = None


def server_context(endpoint: TlsEndpoint) -> ssl.SSLContext:
    """The server-side TLS context of ``endpoint`` (TLS 1.2 or later).

    Raises:
        OSError, ssl.SSLError: a file is missing or is not a valid certificate or key.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(endpoint.cert), str(endpoint.key))
    if endpoint.client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(endpoint.client_ca))
    return context


async def _open_target(target: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if ":" in target and not target.startswith("/"):
        host, _, port = target.rpartition(":")
        return await asyncio.open_connection(host, int(port))
    return await asyncio.open_unix_connection(target)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until end of stream or an error; then close ``writer``."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError, RuntimeError):
            writer.close()


class TlsProxy:
    """A running TLS proxy (see the module doc), on an asyncio loop of its own thread.

    ``start()`` binds and returns the port; ``close()`` stops accepting and closes every
    relayed connection. Also a context manager."""

    def __init__(self, endpoint: TlsEndpoint) -> None:
        self.endpoint = endpoint
        self.port = 0
        self._context = server_context(endpoint)
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            target_r, target_w = await _open_target(self.endpoint.target)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, target_w}
        try:
            await asyncio.gather(_pump(client_r, target_w), _pump(target_r, client_w))
        finally:
            self._writers -= {client_w, target_w}

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(
            self._relay, self.endpoint.host, self.endpoint.port, ssl=self._context
        )
        return int(self._server.sockets[0].getsockname()[1])

    def start(self) -> int:
        """Listen (the port chosen at random when the endpoint's is 0) and relay in a
        daemon thread; returns the port. Raises OSError when the port is taken."""
        self.port = self._loop.run_until_complete(self._listen())
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="rediscache-tlsproxy", daemon=True
        )
        self._thread.start()
        return self.port

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        writers = list(self._writers)
        for writer in writers:
            writer.transport.abort()  # at once: no TLS close handshake with a peer
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(3):  # let the aborted transports finish closing
            await asyncio.sleep(0)
        if self._server is not None:
            await self._server.wait_closed()

    def close(self) -> None:
        """Stop listening and close every relayed connection (both sides)."""
        if self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._thread = None
        self._loop.close()

    def __enter__(self) -> TlsProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    """The proxy as a process, until SIGTERM or SIGINT (see the module doc)."""
    parser = argparse.ArgumentParser(prog="python -m rediscache.tlsproxy")
    parser.add_argument("--cert", required=True, type=Path, help="certificate chain (PEM)")
    parser.add_argument("--key", required=True, type=Path, help="private key (PEM)")
    parser.add_argument("--client-ca", type=Path, help="require client certs of this CA")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--to", required=True, help="the Redis: unix socket path or host:port")
    args = parser.parse_args(argv)
    endpoint = TlsEndpoint(args.cert, args.key, args.to, args.host, args.port, args.client_ca)
    proxy = TlsProxy(endpoint)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    proxy.start()
    try:
        stop.wait()
    finally:
        proxy.close()


if __name__ == "__main__":
    main()
