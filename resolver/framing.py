"""DNS over TCP framing (RFC 1035 4.2.2, RFC 7766): each message is preceded by its length as
a 2-byte big-endian integer. Sans-IO: bytes in, whole messages out.

Contract of `TcpFramer.feed(data)`: returns the complete messages (possibly none) found so far,
keeping any partial one for the next call; raises `FramingError` on a zero-length frame, which
no DNS message can be, so the connection should be closed.
"""

from __future__ import annotations

from typing import Final

MAX_MESSAGE: Final = 65535


class FramingError(Exception):
    """The peer sent a frame no DNS message can fill (the remote side's fault)."""


def encode_frame(message: bytes) -> bytes:
    """One message with its length prefix; raises ValueError above 65535 bytes."""
    n = len(message)
    if n > MAX_MESSAGE:
        raise ValueError(f"a DNS message over TCP is at most {MAX_MESSAGE} bytes, got {n}")
    return n.to_bytes(2, "big") + message


class TcpFramer:
    """Reassembles length-prefixed messages from a byte stream, fed in any split."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held toward the next message (0 between messages)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buffer
        buf += data
        out: list[bytes] = []
        start = 0
        end = len(buf)
        while end - start >= 2:
            n = (buf[start] << 8) | buf[start + 1]
            if n == 0:
                raise FramingError("zero-length DNS frame")
            if end - start - 2 < n:
                break
            out.append(bytes(buf[start + 2 : start + 2 + n]))
            start += 2 + n
        if start:
            del buf[:start]
        return out
