"""A TCP relay for end-to-end tests: forwards connections to one of its targets, recording bytes.

Two uses in the gateway's tests: the ingress in front of gateway replicas (the targets can be
switched while clients run, and switching closes the open connections as a replica going away
would), and a recorder between the gateway and postgres-mcp (every byte the gateway sends is kept,
so a test can assert that no `Authorization` header and no token ever reached postgres-mcp).
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Sequence


class TcpRelay:
    def __init__(self, targets: Sequence[int], *, record: bool = False) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._targets = list(targets)
        self._cycle = itertools.cycle(self._targets)
        self._open: set[socket.socket] = set()
        self.record = record
        self._sent = bytearray()  # client -> target
        self.connections = 0
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def sent(self) -> bytes:
        with self._lock:
            return bytes(self._sent)

    def set_targets(self, targets: Sequence[int]) -> None:
        """Routes new connections to these ports and closes the open ones."""
        with self._lock:
            self._targets = list(targets)
            self._cycle = itertools.cycle(self._targets)
            sockets = list(self._open)
        for sock in sockets:
            _close(sock)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                port = next(self._cycle) if self._targets else None
                self.connections += 1
            if port is None:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, outgoing: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if outgoing and self.record:
                    with self._lock:
                        self._sent += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _close(source)
            _close(sink)

    def close(self) -> None:
        self._closed.set()
        _close(self._listener)
        self.set_targets([])


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
