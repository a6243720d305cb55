"""The asyncio shell around `WebRtcTransport`s: one shared UDP socket, demultiplexing and timers.

It is the only transport-layer module that reads the clock. Datagrams are demultiplexed by their first
byte (RFC 7983 section 7): STUN by the local ufrag in USERNAME, DTLS and SRTP by the remote address an
authenticated check came from. Timers live in one heap driven by a single periodic callback.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import random
import socket
import struct
import time
from collections.abc import Callable

from sfu.dtls import DtlsCertificate
from sfu.ice import Addr, local_ufrag_of, parse_stun
from sfu.stats import DropReason, MediaStats
from sfu.transport import TransportListener, TransportRole, TransportState, WebRtcTransport

# The timer sleeps until the earliest transport deadline (DTLS retransmits start at 1 s, RFC 6347 section
# 4.2.4.1; consent is checked every few seconds), but never wakes more often than this.
TIMER_TICK = 0.02
SOCKET_BUFFER = 4 * 1024 * 1024  # bytes asked for SO_RCVBUF/SO_SNDBUF; the kernel may cap it
# Kernel receive timestamps (socket(7)): arrival times must not include our own processing delay, or the
# publisher's estimator reads our event-loop latency as network queuing and backs off.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)
MAX_DATAGRAM = 2048
READ_BATCH = 64  # datagrams per readiness callback, so timers and signalling still get their turn

_UNKNOWN_ADDRESS = DropReason.UNKNOWN_ADDRESS
log = logging.getLogger(__name__)


class UdpEndpoint:
    """One bound UDP socket shared by every transport created from it."""

    def __init__(
        self,
        *,
        sock: socket.socket,
        stats: MediaStats,
        clock: Callable[[], float],
        certificate: DtlsCertificate,
        rng: random.Random,
        consent_timeout: float,
    ) -> None:
        self._sock = sock
        # Real-time media is not worth queueing in user space: a full kernel buffer (4 MiB) means the
        # packet would be late anyway. Transports send straight through this and count a failure as a drop.
        self._sock_sendto = sock.sendto
        self._stats = stats
        self._drops = stats.drops
        self._clock = clock
        self.certificate = certificate
        self._rng = rng
        self._consent_timeout = consent_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._by_ufrag: dict[str, WebRtcTransport] = {}
        self._by_addr: dict[Addr, WebRtcTransport] = {}
        self._deadlines: dict[WebRtcTransport, float] = {}
        self._heap: list[tuple[float, int, WebRtcTransport]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf  # when the armed timer fires, on our clock
        self._closed = False

    @classmethod
    async def create(
        cls,
        host: str,
        port: int,
        *,
        stats: MediaStats,
        clock: Callable[[], float] | None = None,
        certificate: DtlsCertificate | None = None,
        rng: random.Random | None = None,
        consent_timeout: float = 30.0,
    ) -> UdpEndpoint:
        loop = asyncio.get_running_loop()
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(info[0], socket.SOCK_DGRAM)
        try:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.bind(info[4])
        except OSError:
            sock.close()
            raise
        self = cls(
            sock=sock,
            stats=stats,
            clock=clock or time.monotonic,
            certificate=certificate or DtlsCertificate.generate(),
            rng=rng or random.Random(),
            consent_timeout=consent_timeout,
        )
        self._loop = loop
        loop.add_reader(sock.fileno(), self._readable)
        return self

    @property
    def local_address(self) -> Addr:
        host, port = self._sock.getsockname()[:2]
        return (host, port)

    @property
    def transports(self) -> list[WebRtcTransport]:
        return list(self._by_ufrag.values())

    def create_transport(self, listener: TransportListener, *, role: TransportRole = "server") -> WebRtcTransport:
        if self._closed:
            raise RuntimeError("endpoint closed")
        transport = WebRtcTransport(
            stats=self._stats,
            certificate=self.certificate,
            listener=listener,
            send=self._sock_sendto,  # the hot path: no Python frame between a transport and the socket
            rng=self._rng,
            role=role,
            consent_timeout=self._consent_timeout,
            on_close=self._forget,
        )
        self._by_ufrag[transport.ice_ufrag] = transport
        return transport

    def connect(self, transport: WebRtcTransport, remote_addr: Addr) -> None:
        """Client role: route the server's answers from `remote_addr` to `transport` and start ICE.

        Datagrams from the server carry nothing but its address, so one endpoint holds at most one client
        transport per server address; a load client opens one endpoint per simulated participant.
        """
        self._by_addr[remote_addr] = transport
        transport.connect(remote_addr, now=self._clock())
        self._refresh(transport)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for transport in list(self._by_ufrag.values()):
            transport.close("endpoint_closed")
        if self._timer is not None:
            self._timer.cancel()
        if self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    # ---- datagrams ---------------------------------------------------------------------------------

    def _readable(self) -> None:
        recvmsg = self._sock.recvmsg
        # Kernel timestamps are wall-clock time; map them onto our monotonic clock once per batch.
        offset = self._clock() - time.time()
        for _ in range(READ_BATCH):
            try:
                data, ancdata, _flags, addr = recvmsg(MAX_DATAGRAM, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # e.g. ECONNREFUSED from an ICMP error for one peer: never fatal for the others
            now = None
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(cdata)
                    now = sec + nsec * 1e-9 + offset
            self._datagram_received(data, addr[:2], self._clock() if now is None else now)

    def _datagram_received(self, data: bytes, addr: Addr, now: float) -> None:
        try:
            self._demux(data, addr, now)
        except Exception:
            # A bug behind one transport (e.g. in a listener) must not take the shared socket down: some
            # loops (uvloop) close a datagram transport whose protocol callback raised.
            log.exception("datagram handling failed len=%d", len(data))  # no addresses in logs

    def _demux(self, data: bytes, addr: Addr, now: float) -> None:
        first = data[0] if data else 255
        if 127 < first < 192:  # SRTP/SRTCP: the hot path
            transport = self._by_addr.get(addr)
            if transport is None:
                self._drops[_UNKNOWN_ADDRESS] += 1
            else:
                transport.srtp_received(data, addr, now=now)
        elif 19 < first < 64:
            transport = self._by_addr.get(addr)
            if transport is None:
                self._drops[_UNKNOWN_ADDRESS] += 1
            else:
                transport.dtls_received(data, addr, now=now)
                self._refresh(transport)
        elif first < 4:
            self._stun_received(data, addr, now)
        else:
            self._drops[DropReason.NOT_WEBRTC] += 1

    def _stun_received(self, data: bytes, addr: Addr, now: float) -> None:
        message = parse_stun(data)
        if message is None:
            self._drops[DropReason.STUN_MALFORMED] += 1
            return
        ufrag = local_ufrag_of(message)
        # Requests name us in USERNAME; responses (client role) only have the address to go by.
        transport = self._by_addr.get(addr) if ufrag is None else self._by_ufrag.get(ufrag)
        if transport is None:
            self._drops[DropReason.STUN_UNKNOWN_USERNAME if ufrag is not None else _UNKNOWN_ADDRESS] += 1
            return
        outcome = transport.stun_received(message, addr, now=now)
        if outcome.validated and transport.state is not TransportState.CLOSED:
            self._by_addr[addr] = transport
        self._refresh(transport)

    # ---- timers ------------------------------------------------------------------------------------

    def _refresh(self, transport: WebRtcTransport) -> None:
        """Re-read one transport's next deadline; only ingress STUN/DTLS, connect and timers move it."""
        deadline = transport.next_timer()
        if deadline is None:
            self._deadlines.pop(transport, None)
            return
        if self._deadlines.get(transport) != deadline:
            self._deadlines[transport] = deadline
            heapq.heappush(self._heap, (deadline, next(self._seq), transport))
            self._arm()

    def _arm(self) -> None:
        """Wake for the earliest deadline: an idle server has no periodic wake-ups at all."""
        if self._closed or self._loop is None or not self._heap:
            return
        deadline = self._heap[0][0]
        if self._timer is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        now = self._clock()
        delay = max(TIMER_TICK, deadline - now)
        self._timer_at = now + delay
        self._timer = self._loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        now = self._clock()
        heap = self._heap
        due = []
        while heap and heap[0][0] <= now:
            deadline, _, transport = heapq.heappop(heap)
            if self._deadlines.get(transport, math.nan) == deadline:  # else superseded by a refresh
                del self._deadlines[transport]
                due.append(transport)
        # Handled after popping: a deadline that stays due is retried next tick, not spun on.
        for transport in due:
            try:
                transport.handle_timer(now=now)
            except Exception:  # one transport's failure must not stop the others' timers
                log.exception("transport timer failed transport=%s", transport.id)
                transport.close("internal_error")
            self._refresh(transport)
        self._arm()

    def _forget(self, transport: WebRtcTransport) -> None:
        if self._by_ufrag.get(transport.ice_ufrag) is transport:
            del self._by_ufrag[transport.ice_ufrag]
        for addr in transport.addresses:
            if self._by_addr.get(addr) is transport:
                del self._by_addr[addr]
        self._deadlines.pop(transport, None)
