"""A minimal websocket listener (RFC 6455, stdlib only) for ComfyUI's ``/ws``: tests and benchmarks.

Enough to connect as a client id and read the server's JSON text messages (ComfyUI sends them
unmasked and unfragmented); binary frames (previews) and control frames are returned as a
placeholder. Never sends anything after the handshake.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any


class WebSocket:
    """A minimal RFC 6455 client (text frames from the server, unmasked), enough to listen."""

    def __init__(self, url: str, client_id: str) -> None:
        """Connect to ``url`` (``http://host:port``) as ``client_id``."""
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"no websocket at {url}: {head[:200]!r}")
        self.messages: list[dict[str, Any]] = []

    def _exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes from the socket."""
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("websocket closed")
            data += chunk
        return data

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON text message, or None when nothing comes within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            first, second = self._exact(2)
        except TimeoutError:
            return None
        self.sock.settimeout(30)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack(">H", self._exact(2))
        elif length == 127:
            (length,) = struct.unpack(">Q", self._exact(8))
        payload = self._exact(length)
        if first & 0x0F != 1:  # binary previews, pings: not what this listens for
            return {"type": f"opcode {first & 0x0F}"}
        message = json.loads(payload)
        self.messages.append(message)
        return message

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()
