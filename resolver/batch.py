"""UDP in batches: `recvmmsg(2)` / `sendmmsg(2)` through ctypes (Linux).

Why: a query costs about 1 us to answer (`resolver.answers`), while asyncio's per-datagram path
(a protocol callback, one `recvfrom` and one `sendto` system call each) costs several times
that. Under load the socket holds many queries; one `recvmmsg` takes up to `BATCH` of them and
one `sendmmsg` returns the answers, so the system-call cost is shared by the batch.

`BatchSocket` owns no policy: `serve(handler)` reads whatever is queued and calls
`handler(queries, peers)` once per batch; each answer that is `bytes` is sent back to its
sender, None sends nothing. `available()` says whether the platform has both calls; otherwise the caller
uses an asyncio datagram endpoint.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import socket
import sys
from collections.abc import Callable
from typing import Any, Final

# Datagrams taken per system call, and system calls per readiness event (fairness with TCP).
BATCH: Final = 128
ROUNDS: Final = 8
# Bytes kept per datagram (queries are small; EDNS allows larger answers, sent one by one).
SLOT: Final = 4096
MSG_DONTWAIT: Final = 0x40
_SOCKADDR_SIZE: Final = 28  # sockaddr_in6, big enough for sockaddr_in

# (queries, their senders as (ip, port)) -> the answer to each, None to send nothing.
Handler = Callable[[list[bytes], list[tuple[str, int]]], list["bytes | None"]]


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_IOVec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_MMSG_SIZE: Final = ctypes.sizeof(_MMsgHdr)


def _libc_calls() -> tuple[Any, Any] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    recvmmsg.restype = ctypes.c_int
    sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    sendmmsg.restype = ctypes.c_int
    return recvmmsg, sendmmsg


_CALLS = _libc_calls()


def available() -> bool:
    return _CALLS is not None


class BatchSocket:
    """A bound, non-blocking UDP socket served in batches. The caller owns the socket."""

    def __init__(self, sock: socket.socket) -> None:
        if _CALLS is None:
            raise OSError(errno.ENOSYS, "recvmmsg/sendmmsg are not available on this platform")
        self._recvmmsg, self._sendmmsg = _CALLS
        self.sock = sock
        self._fd = sock.fileno()
        self._v6 = sock.family == socket.AF_INET6
        self._peers: dict[bytes, tuple[str, int]] = {}
        n = BATCH
        self._rpool = (ctypes.c_char * (n * SLOT))()
        self._spool = (ctypes.c_char * (n * SLOT))()
        self._names = (ctypes.c_char * (n * _SOCKADDR_SIZE))()
        self._riov = (_IOVec * n)()
        self._siov = (_IOVec * n)()
        self._rmsgs = (_MMsgHdr * n)()
        self._smsgs = (_MMsgHdr * n)()
        rbase = ctypes.addressof(self._rpool)
        sbase = ctypes.addressof(self._spool)
        nbase = ctypes.addressof(self._names)
        self._name_addrs = [nbase + i * _SOCKADDR_SIZE for i in range(n)]
        for i in range(n):
            self._riov[i].iov_base = rbase + i * SLOT
            self._riov[i].iov_len = SLOT
            self._siov[i].iov_base = sbase + i * SLOT
            for msgs, iov in ((self._rmsgs, self._riov), (self._smsgs, self._siov)):
                hdr = msgs[i].msg_hdr
                hdr.msg_name = self._name_addrs[i]
                hdr.msg_namelen = _SOCKADDR_SIZE
                hdr.msg_iov = ctypes.pointer(iov[i])
                hdr.msg_iovlen = 1
        self._rmsgs_addr = ctypes.addressof(self._rmsgs)
        self._smsgs_addr = ctypes.addressof(self._smsgs)
        # Views the hot loop reads and writes without building ctypes proxies per message.
        self._rview = memoryview(self._rpool).cast("B")
        self._sview = memoryview(self._spool).cast("B")
        self._nview = memoryview(self._names).cast("B")
        self._rmsg_list = [self._rmsgs[i] for i in range(n)]
        self._siov_list = [self._siov[i] for i in range(n)]
        self._shdr_list = [self._smsgs[i].msg_hdr for i in range(n)]

    def _peer(self, i: int) -> tuple[str, int]:
        base = i * _SOCKADDR_SIZE
        raw = bytes(self._nview[base : base + (24 if self._v6 else 8)])
        peer = self._peers.get(raw)
        if peer is None:
            port = (raw[2] << 8) | raw[3]
            ip = (
                socket.inet_ntop(socket.AF_INET6, raw[8:24]) if self._v6 else socket.inet_ntop(socket.AF_INET, raw[4:8])
            )
            if len(self._peers) >= 8192:
                self._peers.clear()
            peer = self._peers[raw] = (ip, port)
        return peer

    def serve(self, handler: Handler) -> int:
        """Answer what is queued now (up to ROUNDS batches); returns the datagrams read."""
        total = 0
        rview, sview = self._rview, self._sview
        rmsgs, siov, shdr, names = self._rmsg_list, self._siov_list, self._shdr_list, self._name_addrs
        peer_of = self._peer
        known = self._peers.get
        nview = self._nview
        keylen = 24 if self._v6 else 8
        for _ in range(ROUNDS):
            got = self._recvmmsg(self._fd, self._rmsgs_addr, BATCH, MSG_DONTWAIT, None)
            if got <= 0:
                break
            total += got
            queries = [bytes(rview[i * SLOT : i * SLOT + rmsgs[i].msg_len]) for i in range(got)]
            raw = bytes(nview[: got * _SOCKADDR_SIZE])
            peers = [known(raw[j : j + keylen]) or peer_of(i) for i, j in enumerate(range(0, len(raw), _SOCKADDR_SIZE))]
            answers = handler(queries, peers)
            out = 0
            for i, wire in enumerate(answers):
                if wire is None:
                    continue
                n = len(wire)
                if n > SLOT:
                    self._send_one(wire, i)
                    continue
                sbase = out * SLOT
                sview[sbase : sbase + n] = wire
                siov[out].iov_len = n
                if out != i:
                    shdr[out].msg_name = names[i]
                out += 1
            self._flush(out)
            # Restore the identity name mapping changed by skipped datagrams.
            for j in range(out):
                shdr[j].msg_name = names[j]
            if got < BATCH:
                break
        return total

    def _flush(self, count: int) -> None:
        sent = 0
        # A full send buffer (EAGAIN) drops the rest, as UDP would; anything else is retried once.
        for _ in range(2):
            if sent >= count:
                return
            done = self._sendmmsg(self._fd, self._smsgs_addr + sent * _MMSG_SIZE, count - sent, 0)
            if done <= 0:
                return
            sent += done

    def _send_one(self, wire: bytes, i: int) -> None:
        base = i * _SOCKADDR_SIZE
        raw = bytes(self._nview[base : base + _SOCKADDR_SIZE])
        ip, port = self._peer(i)
        try:
            if self._v6:
                self.sock.sendto(wire, (ip, port, 0, int.from_bytes(raw[24:28], "little")))
            else:
                self.sock.sendto(wire, (ip, port))
        except OSError:
            pass
