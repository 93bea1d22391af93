"""A loopback TCP forwarding proxy that counts network round trips.

A round trip is counted each time a client sends bytes after the server last sent
bytes on that connection (and for the first client send). Clients must connect with
``sslmode=disable`` (the proxy forwards bytes and does not speak TLS). Listens on
127.0.0.1 only; the upstream is a ``(host, port)`` or a Unix socket path.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from types import TracebackType

__all__ = ["RoundTripProxy"]


class RoundTripProxy:
    """``with RoundTripProxy(upstream) as p: connect to 127.0.0.1:p.port ...; p.round_trips``."""

    def __init__(self, upstream: str | tuple[str, int]) -> None:
        self.upstream = upstream
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(("127.0.0.1", 0))
        self._lsock.listen(64)
        self.port: int = self._lsock.getsockname()[1]
        self._lock = threading.Lock()
        self._round_trips = 0
        self.last_activity = 0.0  # time.monotonic() of the last bytes forwarded
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        # per client socket: [peer socket, is_client, last direction was server]
        self._pairs: dict[socket.socket, list[object]] = {}
        self._thread = threading.Thread(target=self._loop, name="rtproxy", daemon=True)

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> RoundTripProxy:
        self._lsock.setblocking(False)
        self._sel.register(self._lsock, selectors.EVENT_READ)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for s in list(self._pairs):
            s.close()
        self._pairs.clear()
        self._lsock.close()
        self._sel.close()

    def __enter__(self) -> RoundTripProxy:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- counting ------------------------------------------------------------------
    @property
    def round_trips(self) -> int:
        with self._lock:
            return self._round_trips

    def reset(self) -> None:
        with self._lock:
            self._round_trips = 0

    def settle(self, quiet: float = 0.05, timeout: float = 5.0) -> None:
        """Wait until nothing was forwarded for *quiet* seconds (what earlier requests
        sent, and the server's answers to it, have gone through), at most *timeout*."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            idle = time.monotonic() - self.last_activity
            if idle >= quiet:
                return
            time.sleep(quiet - idle)

    def conninfo(self, **params: str) -> dict[str, str]:
        """Connection parameters that go through the proxy."""
        return {"host": "127.0.0.1", "port": str(self.port), "sslmode": "disable", **params}

    # -- forwarding ---------------------------------------------------------------
    def _connect_upstream(self) -> socket.socket:
        if isinstance(self.upstream, str):
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(self.upstream)
        else:
            up = socket.create_connection(self.upstream, timeout=5)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up.setblocking(False)
        return up

    def _loop(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._lsock:
                    self._accept()
                else:
                    self._forward(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._lsock.accept()
        except BlockingIOError:
            return
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.setblocking(False)
        try:
            up = self._connect_upstream()
        except OSError:
            client.close()
            return
        state: list[object] = [True]  # shared: last sender was the server
        self._pairs[client] = [up, True, state]
        self._pairs[up] = [client, False, state]
        self._sel.register(client, selectors.EVENT_READ)
        self._sel.register(up, selectors.EVENT_READ)

    def _forward(self, sock: socket.socket) -> None:
        entry = self._pairs.get(sock)
        if entry is None:
            return
        peer, from_client, state = entry
        assert isinstance(peer, socket.socket) and isinstance(state, list)
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close_pair(sock, peer)
            return
        self.last_activity = time.monotonic()
        if from_client:
            if state[0]:
                with self._lock:
                    self._round_trips += 1
                state[0] = False
        else:
            state[0] = True
        try:
            peer.setblocking(True)
            peer.sendall(data)
            peer.setblocking(False)
        except OSError:
            self._close_pair(sock, peer)

    def _close_pair(self, a: socket.socket, b: socket.socket) -> None:
        for s in (a, b):
            if s in self._pairs:
                del self._pairs[s]
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(s)
                s.close()
