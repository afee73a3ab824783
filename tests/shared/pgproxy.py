"""A TCP proxy in front of PostgreSQL that can lose the answer to one COMMIT.

The real-process tests point quiv at this proxy (``sslmode=disable``, so the
protocol is readable). When armed, the proxy waits for a transaction whose
statements match a pattern (say, the claim's ``INSERT INTO quiv_jobs ...
RETURNING``), lets the server commit it, then drops the server's
``CommandComplete`` for the ``COMMIT`` and closes that client connection: the
client sees a broken connection and cannot tell whether its transaction
committed, which it did. That is the one failure a fenced protocol must
survive and that killing backends cannot produce on demand.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field

__all__ = ["LostCommitProxy"]

_UPSTREAM_TIMEOUT = 10.0
_KEEP = 8192


@dataclass
class _Link:
    """One client connection and its server connection."""

    client: socket.socket
    server: socket.socket
    #: What the client sent in its current transaction (the tail of it).
    sent: bytearray = field(default_factory=bytearray)
    #: The current transaction matched the pattern while the proxy was armed.
    marked: bool = False

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class LostCommitProxy:
    """Forward 127.0.0.1:``port`` to the server; :meth:`arm` loses the next matching COMMIT's answer."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pattern: tuple[bytes, ...] | None = None
        self._links: list[_Link] = []
        self._closed = False
        #: Set once an answer to a COMMIT was lost (the transaction had committed).
        self.cut = threading.Event()
        threading.Thread(target=self._accept, name="pgproxy-accept", daemon=True).start()

    def arm(self, *pattern: bytes) -> None:
        """Lose the answer to the COMMIT of the next transaction that contains every ``pattern``."""
        with self._lock:
            self._pattern = pattern
            self.cut.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            links, self._links = self._links, []
        with contextlib.suppress(OSError):
            self._listener.close()
        for link in links:
            link.close()

    # ------------------------------------------------------------------------------- plumbing
    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=_UPSTREAM_TIMEOUT)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            link = _Link(client, server)
            with self._lock:
                if self._closed:
                    link.close()
                    return
                self._links.append(link)
            threading.Thread(target=self._upward, args=(link,), name="pgproxy-up", daemon=True).start()
            threading.Thread(target=self._downward, args=(link,), name="pgproxy-down", daemon=True).start()

    def _upward(self, link: _Link) -> None:
        """Client to server, unchanged; remember what the current transaction said."""
        try:
            while chunk := link.client.recv(65536):
                with self._lock:
                    link.sent += chunk
                    del link.sent[:-_KEEP]
                    pattern = self._pattern
                    if pattern is not None and all(p in link.sent for p in pattern):
                        link.marked = True
                        self._pattern = None  # one transaction only
                link.server.sendall(chunk)
        except OSError:
            pass
        link.close()

    def _downward(self, link: _Link) -> None:
        """Server to client, message by message, so the COMMIT's answer can be held back."""
        buffer = bytearray()
        try:
            while chunk := link.server.recv(65536):
                buffer += chunk
                out = bytearray()
                while len(buffer) >= 5:
                    kind = buffer[0:1]
                    (length,) = struct.unpack("!I", buffer[1:5])
                    if len(buffer) < 1 + length:
                        break
                    message = bytes(buffer[: 1 + length])
                    del buffer[: 1 + length]
                    if kind == b"C" and message[5:].rstrip(b"\0") in (b"COMMIT", b"ROLLBACK"):
                        with self._lock:
                            marked, link.marked = link.marked, False
                            link.sent.clear()
                        if marked and message[5:].rstrip(b"\0") == b"COMMIT":
                            link.client.sendall(out)
                            self.cut.set()
                            link.close()  # the client never hears that its transaction committed
                            return
                    out += message
                if out:
                    link.client.sendall(out)
        except OSError:
            pass
        link.close()
