"""MediaServer: the media plane's I/O shell and the API signalling calls.

It owns the shared UDP endpoint, one `Connection` per transport, the rooms' routers and the one periodic
timer that drives feedback and reports. Only this module and `sfu/udp.py` read the clock.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sfu.connection import Connection
from sfu.router import Router
from sfu.stats import MediaStats
from sfu.transport import WebRtcTransport
from sfu.udp import UdpEndpoint

log = logging.getLogger("confidant.sfu")


@dataclass(frozen=True)
class MediaConfig:
    host: str = "0.0.0.0"
    port: int = 0  # 0 picks a free port (tests); production sets one port for the firewall
    announced_ips: tuple[str, ...] = ()  # addresses put in SDP candidates; default: the bound address(es)
    consent_timeout: float = 30.0  # RFC 7675 section 5.1
    tick_interval: float = 0.02


@dataclass
class _Entry:
    connection: Connection
    transport: WebRtcTransport
    routers: set[str] = field(default_factory=set)
    probe_timer: asyncio.TimerHandle | None = None  # armed while a probe cluster is being sent


def _host_addresses() -> list[str]:
    """Non-loopback IPv4 addresses of this host, for candidates when bound to the wildcard address."""
    from aioice.ice import get_host_addresses

    return [a for a in get_host_addresses(use_ipv4=True, use_ipv6=False)
            if not ipaddress.ip_address(a).is_loopback]


class MediaServer:
    def __init__(self, config: MediaConfig | None = None, *, stats: MediaStats | None = None,
                 rng: random.Random | None = None) -> None:
        self.config = config or MediaConfig()
        self.stats = stats or MediaStats()
        self._rng = rng or random.SystemRandom()
        self._endpoint: UdpEndpoint | None = None
        self._entries: dict[int, _Entry] = {}  # by id(transport)
        self.routers: dict[str, Router] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.candidates: list[tuple[str, int]] = []
        self.tick_lag_s = 0.0  # how late the last tick ran: event-loop lag as the media plane sees it

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # uvloop's loop.time() has millisecond resolution; transport-wide feedback reports arrivals in
        # 250 us units, and quantised arrival times read as delay jitter by the publisher's estimator.
        self._endpoint = await UdpEndpoint.create(
            self.config.host, self.config.port, stats=self.stats, clock=time.monotonic,
            consent_timeout=self.config.consent_timeout,
        )
        host, port = self._endpoint.local_address[:2]
        ips = list(self.config.announced_ips) or ([host] if host not in ("0.0.0.0", "") else _host_addresses())
        self.candidates = [(ip, port) for ip in ips]
        first = self._loop.time() + self.config.tick_interval
        self._timer = self._loop.call_at(first, self._tick, first)
        log.info("media plane listening udp_port=%d candidates=%d", port, len(self.candidates))

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for router in list(self.routers.values()):
            router.close()
        for entry in list(self._entries.values()):
            entry.transport.close("server_closed")
        self._entries.clear()
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None

    @property
    def bound(self) -> bool:
        """Whether the shared media UDP port is open (readiness)."""
        return self._endpoint is not None

    @property
    def port(self) -> int:
        assert self._endpoint is not None, "start() first"
        return int(self._endpoint.local_address[1])

    def now(self) -> float:
        return time.monotonic()

    # -- API for signalling -------------------------------------------------------------------------

    def create_transport(self, *, on_closed: Callable[[str], None]) -> WebRtcTransport:
        """A new server-role (ICE-lite, DTLS server) transport; `on_closed(reason)` fires once when it ends."""
        assert self._endpoint is not None, "start() first"
        holder: list[WebRtcTransport] = []

        def closed(reason: str) -> None:
            if holder:
                self._entries.pop(id(holder[0]), None)
            for router in self.routers.values():
                router.prune()
            on_closed(reason)

        connection = Connection(stats=self.stats, rng=self._rng,
                                wallclock_offset=time.time() - self.now(), on_closed=closed,
                                send_clock=time.monotonic)
        transport = self._endpoint.create_transport(connection)
        holder.append(transport)
        connection.attach(transport)
        self._entries[id(transport)] = _Entry(connection, transport)
        return transport

    def connection_of(self, transport: WebRtcTransport) -> Connection:
        entry = self._entries.get(id(transport))
        if entry is None:
            raise ValueError("unknown or closed transport")
        return entry.connection

    def create_router(self) -> Router:
        router = Router(f"{self._rng.getrandbits(64):016x}", connection_of=self.connection_of, clock=self.now,
                        stats=self.stats, rng=self._rng)
        self.routers[router.id] = router
        return router

    def close_router(self, router: Router) -> None:
        router.close()
        self.routers.pop(router.id, None)

    @property
    def connections(self) -> list[Connection]:
        return [e.connection for e in self._entries.values()]

    # -- timer --------------------------------------------------------------------------------------

    def _tick(self, due: float) -> None:
        """The media timer: every `tick_interval`, each connection whose work has come due (`Connection.due`).

        A plain loop callback rather than a task sleeping in a loop: no future, task step or coroutine
        resumption per pass, which on an idle server was most of what the timer cost.
        """
        loop = self._loop
        if loop is None:
            return
        lag = loop.time() - due
        self.tick_lag_s = max(0.0, lag)
        # After a stall, do not try to catch up tick by tick.
        nxt = loop.time() + self.config.tick_interval if lag > 1.0 else due + self.config.tick_interval
        self._timer = loop.call_at(nxt, self._tick, nxt)
        now = time.monotonic()
        for entry in list(self._entries.values()):
            connection = entry.connection
            if now < connection.due:
                continue
            try:
                connection.tick(now=now)
                if entry.probe_timer is None and connection.downlink.probe_due_at is not None:
                    self._send_probes(entry)
            except Exception:  # one broken connection must not stop the others' reports
                log.exception("connection tick failed transport=%s", entry.transport.id)

    def _send_probes(self, entry: _Entry) -> None:
        """Send what is due of a probe cluster and wake again for the rest: clusters space their packets
        2-3 ms apart, far finer than the 20 ms tick (the event loop's timers have about 1 ms resolution,
        so a late wake sends what has fallen due at once and the measured send times stay true)."""
        entry.probe_timer = None
        if entry.connection.closed or self._entries.get(id(entry.transport)) is not entry:
            return
        now = time.monotonic()
        due = entry.connection.downlink.send_probes(now=now)
        if due is not None and self._loop is not None:
            entry.probe_timer = self._loop.call_later(max(0.0, due - now), self._send_probes, entry)
