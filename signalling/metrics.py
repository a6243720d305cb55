"""`/metrics`: room and participant gauges plus the media plane's counters, computed at scrape time.

Labels carry only bounded enumerations (kind, role, reason): never ids, names or addresses.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sfu.stats import DropReason, MediaStats
from signalling import keys
from signalling.hub import Hub
from signalling.rooms import RoomKind, RoomState
from signalling.tokens import Role


class SessionCollector(Collector):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rooms = GaugeMetricFamily("confidant_rooms", "Open rooms by kind", labels=["kind"])
        people = GaugeMetricFamily("confidant_participants", "Connected participants by role", labels=["role"])
        open_rooms = [r for r in self.hub.rooms() if r.state is RoomState.OPEN]
        for kind in RoomKind:
            rooms.add_metric([kind.value], sum(1 for r in open_rooms if r.kind is kind))
        for role in Role:
            people.add_metric([role.value], sum(r.count(role) for r in open_rooms))
        yield rooms
        yield people


class MediaCollector(Collector):
    def __init__(self, stats: MediaStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        s = self.stats
        for name, doc, counter in (
            ("confidant_packets_forwarded", "RTP packets sent to subscribers", s.packets_forwarded),
            ("confidant_bytes_forwarded", "RTP bytes sent to subscribers", s.bytes_forwarded),
            ("confidant_packets_received", "RTP packets received from publishers", s.packets_received),
            ("confidant_bytes_received", "RTP bytes received from publishers", s.bytes_received),
        ):
            family = CounterMetricFamily(name, doc, labels=["kind"])
            for kind in ("audio", "video"):
                family.add_metric([kind], counter.get(kind, 0))
            yield family
        drops = CounterMetricFamily("confidant_packets_dropped", "Packets not processed or forwarded",
                                    labels=["reason"])
        for reason in DropReason:
            drops.add_metric([reason.value], s.drops.get(reason, 0))
        yield drops
        for attr, doc in (
            ("nacks_received", "NACKs received from subscribers"),
            ("retransmissions_sent", "Retransmissions sent"),
            ("plis_sent", "PLIs sent to publishers"),
            ("firs_sent", "FIRs sent to publishers"),
            ("plis_received", "PLIs received from subscribers"),
            ("firs_received", "FIRs received from subscribers"),
            ("ice_failures", "ICE failures"),
            ("dtls_failures", "DTLS failures"),
        ):
            yield CounterMetricFamily(f"confidant_{attr}", doc, value=getattr(s, attr))


def make_registry(hub: Hub) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SessionCollector(hub))
    registry.register(MediaCollector(hub.media.stats))
    return registry


async def metrics_handler(request: web.Request) -> web.Response:
    registry: CollectorRegistry = request.app[keys.METRICS]
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
