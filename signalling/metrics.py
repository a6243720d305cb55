"""`/metrics`: what an on-call engineer needs, in Prometheus conventions (docs/metrics.md says what each means).

Two sources. Counters and gauges the media plane and the hub already keep are read at scrape time
(`SessionCollector`, `MediaCollector`). Distributions over participants (link loss, jitter, RTT,
bandwidth estimates) and derived counters (join latency, audio-only seconds) come
from `Monitor`, a sampler task that observes every subscriber link at a fixed interval into histograms,
so that a scrape never depends on how often Prometheus scrapes and no series is ever per participant.

Labels carry only bounded enumerations (kind, role, state, reason, method, direction): never ids, names
or addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from sfu.connection import Connection
from sfu.consumer import PauseReason
from sfu.params import MediaKind
from sfu.stats import DropReason, MediaStats
from sfu.transport import TransportState
from signalling import keys
from signalling.hub import Hub, Peer
from signalling.rooms import Member, Room, RoomKind, RoomState
from signalling.session import Session
from signalling.tokens import Role

NAMESPACE = "confidant"
PARTICIPANT_STATES = ("waiting", "connecting", "active", "on_hold", "reconnecting", "audio_only")

# Bucket bounds sized for what matters on a call: loss around 1-10 %, jitter around 10-50 ms, RTT
# up to the ~300 ms where conversation suffers, joins around the 1 s service level.
LOSS_BUCKETS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
JITTER_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5)
RTT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0)
BANDWIDTH_BUCKETS = tuple(b / 8 for b in (50e3, 100e3, 200e3, 300e3, 500e3, 800e3, 1.2e6, 2e6, 3e6, 5e6, 10e6))
JOIN_BUCKETS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


# -- what a participant is doing -----------------------------------------------------------------------


def audio_only(connection: Connection) -> bool:
    """Whether downlink adaptation holds this subscriber link in audio-only fallback (or, before the
    adapter exists, whether every video consumer is paused for bandwidth)."""
    downlink = getattr(connection, "downlink", None)
    if downlink is not None:
        return bool(downlink.audio_only)
    video = [c for c in connection.consumers.values() if c.kind is MediaKind.VIDEO]
    return bool(video) and all(c.pause_reason is PauseReason.BANDWIDTH for c in video)


def participant_state(room: Room, member: Member, peer: Peer | None, hub: Hub) -> str:
    """One of PARTICIPANT_STATES. Waiting, on hold and reconnecting come from the room's member state (care
    sessions); connecting, active and audio-only from the participant's transports."""
    declared = getattr(member, "state", None)
    declared = getattr(declared, "value", declared)
    if declared in ("waiting", "reconnecting", "on_hold"):
        return str(declared)
    if peer is None:
        return "reconnecting"  # a member without a connection: its slot is kept for a reconnect
    if not isinstance(peer, Session):
        return "active"
    pub, sub = peer.media_transports
    if any(t is not None and t.state is TransportState.CONNECTING for t in (pub, sub)):
        return "connecting"
    if sub is not None and sub.state is TransportState.CONNECTED:
        with contextlib.suppress(ValueError):
            if audio_only(hub.media.connection_of(sub)):
                return "audio_only"
    return "active"


def estimate_bps(connection: Connection) -> float | None:
    """The downlink bandwidth estimate adaptation keeps on the connection, once it is wired in."""
    downlink = getattr(connection, "downlink", None)
    if downlink is None or not getattr(downlink, "engaged", True):
        return None  # not a subscriber link yet, or only the configured start value
    value = getattr(downlink, "estimate_bps", None)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


# -- scrape-time collectors -------------------------------------------------------------------------------


class SessionCollector(Collector):
    def __init__(self, hub: Hub, drain: Drainable) -> None:
        self.hub = hub
        self.drain = drain

    def collect(self) -> Iterator[Metric]:
        rooms = GaugeMetricFamily("confidant_rooms", "Open rooms by kind", labels=["kind"])
        people = GaugeMetricFamily("confidant_participants", "Connected participants by role and state",
                                   labels=["role", "state"])
        open_rooms = [r for r in self.hub.rooms() if r.state is RoomState.OPEN]
        for kind in RoomKind:
            rooms.add_metric([kind.value], sum(1 for r in open_rooms if r.kind is kind))
        counts = {(role.value, state): 0 for role in Role for state in PARTICIPANT_STATES}
        peers = {(room.id, peer.participant_id): peer for room, peer in self.hub.peers()}
        for room in open_rooms:
            for member in room.members.values():
                key = (member.role.value, participant_state(room, member, peers.get((room.id, member.participant_id)),
                                                            self.hub))
                counts[key] = counts.get(key, 0) + 1
        for (role, state), n in counts.items():
            people.add_metric([role, state], n)
        yield rooms
        yield people
        paused = GaugeMetricFamily("confidant_consumers_paused", "Subscriber tracks paused, by reason",
                                   labels=["reason"])
        by_reason = {r: 0 for r in PauseReason if r is not PauseReason.NONE}
        connections = self.hub.media.connections
        for connection in connections:
            for consumer in connection.consumers.values():
                if consumer.pause_reason is not PauseReason.NONE:
                    by_reason[consumer.pause_reason] += 1
        for reason, n in by_reason.items():
            paused.add_metric([reason.value], n)
        yield paused
        yield GaugeMetricFamily("confidant_audio_only_subscribers",
                                "Subscribers receiving audio only because their link cannot carry video",
                                value=sum(1 for c in connections if audio_only(c)))
        yield GaugeMetricFamily("confidant_media_connections", "Open media transports (publish + subscribe)",
                                value=len(connections))
        yield GaugeMetricFamily("confidant_event_loop_lag_last_seconds",
                                "How late the media timer's last tick ran", value=self.hub.media.tick_lag_s)
        yield GaugeMetricFamily("confidant_draining", "1 while the node refuses new rooms (SIGTERM)",
                                value=1.0 if self.drain.draining else 0.0)
        yield GaugeMetricFamily("confidant_ready", "1 while /readyz answers 200",
                                value=1.0 if self.hub.media.bound and not self.drain.draining else 0.0)


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
            ("nacks_received", "NACK feedback messages received from subscribers"),
            ("retransmissions_sent", "Packets retransmitted to subscribers in answer to NACKs"),
            ("ice_failures", "Transports that failed or lost ICE connectivity"),
            ("dtls_failures", "DTLS handshakes that failed"),
        ):
            yield CounterMetricFamily(f"confidant_{attr}", doc, value=getattr(s, attr))
        # Downlink adaptation (sfu/downlink.py); read with defaults so a media plane without it still scrapes.
        yield CounterMetricFamily("confidant_layer_switches", "Layer changes adaptation made on subscriber tracks",
                                  value=getattr(s, "layer_switches", 0))
        transitions = CounterMetricFamily("confidant_audio_only_transitions",
                                          "Subscribers entering or leaving audio-only fallback", labels=["direction"])
        transitions.add_metric(["enter"], getattr(s, "audio_only_entered", 0))
        transitions.add_metric(["exit"], getattr(s, "audio_only_exited", 0))
        yield transitions
        yield CounterMetricFamily("confidant_probe_clusters_sent", "Bandwidth probe clusters sent to subscribers",
                                  value=getattr(s, "probes_sent", 0))
        probes = CounterMetricFamily("confidant_probe_clusters_finished", "Bandwidth probes by outcome",
                                     labels=["result"])
        probes.add_metric(["succeeded"], getattr(s, "probes_succeeded", 0))
        probes.add_metric(["failed"], getattr(s, "probes_failed", 0))
        yield probes
        for direction, pli, fir, doc in (
            ("sent", s.plis_sent, s.firs_sent, "Keyframe requests sent to publishers, by method"),
            ("received", s.plis_received, s.firs_received, "Keyframe requests received from subscribers, by method"),
        ):
            family = CounterMetricFamily(f"confidant_keyframe_requests_{direction}", doc, labels=["method"])
            family.add_metric(["pli"], pli)
            family.add_metric(["fir"], fir)
            yield family


class Drainable(Protocol):
    """What the collectors read about draining (implemented by `signalling.health.Drain`)."""

    draining: bool


# -- the sampler --------------------------------------------------------------------------------------------


@dataclass
class _JoinWatch:
    started: float
    done: bool = False


class Monitor:
    """Samples participants and links into histograms and derived counters on fixed intervals."""

    JOIN_INTERVAL = 0.025  # join latency resolution
    STATE_INTERVAL = 1.0  # audio-only seconds, event-loop lag
    LINK_INTERVAL = 5.0  # one observation per subscriber link per interval

    def __init__(self, hub: Hub, registry: CollectorRegistry) -> None:
        self.hub = hub
        reg = registry
        self.join_latency = Histogram(
            "join_latency_seconds", "Token presented to the first media packet forwarded to the participant",
            namespace=NAMESPACE, buckets=JOIN_BUCKETS, registry=reg)
        self.joins_without_media = Counter(
            "joins_without_media", "Participants who left before any media reached them (subscribers only)",
            namespace=NAMESPACE, registry=reg)
        self.loss = Histogram("subscriber_loss_ratio", "Loss each subscriber reports (RTCP RR fraction lost), "
                              "worst of its tracks, sampled per link every 5 s",
                              namespace=NAMESPACE, buckets=LOSS_BUCKETS, registry=reg)
        self.jitter = Histogram("subscriber_jitter_seconds", "Interarrival jitter subscribers report, worst of "
                                "their tracks, sampled per link every 5 s",
                                namespace=NAMESPACE, buckets=JITTER_BUCKETS, registry=reg)
        self.rtt = Histogram("subscriber_rtt_seconds", "Round-trip time to each subscriber (RTCP SR/RR), sampled "
                             "per link every 5 s", namespace=NAMESPACE, buckets=RTT_BUCKETS, registry=reg)
        self.bandwidth = Histogram("subscriber_bandwidth_estimate_bytes_per_second", "Downlink bandwidth "
                                   "estimate per subscriber, sampled per link every 5 s",
                                   namespace=NAMESPACE, buckets=BANDWIDTH_BUCKETS, registry=reg)
        self.bandwidth_total = Gauge("subscriber_bandwidth_estimate_sum_bytes_per_second",
                                     "Sum of every subscriber's downlink estimate", namespace=NAMESPACE,
                                     registry=reg)
        self.audio_only_seconds = Counter("audio_only_seconds", "Subscriber-seconds spent in audio-only fallback",
                                          namespace=NAMESPACE, registry=reg)
        self.loop_lag = Histogram("event_loop_lag_seconds", "Event-loop lag: how late timers fire, sampled every "
                                  "second (worst of the monitor's own timer and the media tick)",
                                  namespace=NAMESPACE, buckets=LAG_BUCKETS, registry=reg)
        self._joins: dict[int, _JoinWatch] = {}
        self._task: asyncio.Task[None] | None = None
        # Set by the hub when a participant presents a token: the fine join timer runs only while joins are
        # pending, so an idle or steady server wakes the monitor once a second, not forty times.
        self._join_begun = asyncio.Event()
        hub.join_listeners.append(self._join_begun.set)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_state = next_link = loop.time()
        worst_lag = 0.0
        due = loop.time()
        while True:
            if self._join_begun.is_set() or self._timing_joins():
                self._join_begun.clear()
                due += self.JOIN_INTERVAL
                await asyncio.sleep(max(0.0, due - loop.time()))
            else:
                due = min(next_state, next_link)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._join_begun.wait(), max(0.0, due - loop.time()))
            now = loop.time()
            if now >= due:
                worst_lag = max(worst_lag, now - due)
            else:
                due = now  # woken by a join: time the next interval from here
            if now - due > 1.0:
                due = now  # after a stall, do not catch up interval by interval
            self.sample_joins(self.hub.media.now())
            if now >= next_state:
                next_state = now + self.STATE_INTERVAL
                self.loop_lag.observe(max(worst_lag, self.hub.media.tick_lag_s))
                worst_lag = 0.0
                self.sample_states(self.STATE_INTERVAL)
            if now >= next_link:
                next_link = now + self.LINK_INTERVAL
                self.sample_links()

    def _timing_joins(self) -> bool:
        """Whether a join waits for its first packet and is young enough for the fine timer to matter (past
        the top histogram bucket the once-a-second pass is precise enough)."""
        horizon = self.hub.media.now() - JOIN_BUCKETS[-1]
        return any(not w.done and w.started > horizon for w in self._joins.values())

    def sample_joins(self, now: float) -> None:
        """End each pending join at the first packet forwarded to that participant."""
        live: set[int] = set()
        for _, peer in self.hub.peers():
            if not isinstance(peer, Session) or peer.join_started is None:
                continue
            key = id(peer)
            live.add(key)
            watch = self._joins.get(key)
            if watch is None or watch.started != peer.join_started:
                watch = self._joins[key] = _JoinWatch(peer.join_started)
            if not watch.done and peer.packets_delivered > 0:
                watch.done = True
                self.join_latency.observe(max(0.0, now - watch.started))
        for key in [k for k in self._joins if k not in live]:
            if not self._joins.pop(key).done:
                self.joins_without_media.inc()

    def sample_states(self, interval: float) -> None:
        held = sum(1 for connection in self.hub.media.connections if audio_only(connection))
        if held:
            self.audio_only_seconds.inc(held * interval)

    def sample_links(self) -> None:
        total = 0.0
        for connection in self.hub.media.connections:
            consumers = [c for c in connection.consumers.values() if not c.closed]
            if not consumers:
                continue
            reported = [c for c in consumers if c.rtt_s is not None]
            if reported:
                self.loss.observe(max(c.fraction_lost for c in reported))
                self.jitter.observe(max(c.jitter_s for c in reported))
            if connection.rtt_s is not None:
                self.rtt.observe(connection.rtt_s)
            estimate = estimate_bps(connection)
            if estimate is not None:
                self.bandwidth.observe(estimate / 8)
                total += estimate / 8
        self.bandwidth_total.set(total)


def make_registry(hub: Hub, drain: Drainable) -> tuple[CollectorRegistry, Monitor]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SessionCollector(hub, drain))
    registry.register(MediaCollector(hub.media.stats))
    ProcessCollector(namespace=NAMESPACE, registry=registry)
    return registry, Monitor(hub, registry)


def metric_names(registry: CollectorRegistry) -> Iterable[str]:
    """Every sample name the registry exposes (dashboards and docs are checked against these)."""
    for family in registry.collect():
        for sample in family.samples:
            yield sample.name


async def metrics_handler(request: web.Request) -> web.Response:
    registry: CollectorRegistry = request.app[keys.METRICS]
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
