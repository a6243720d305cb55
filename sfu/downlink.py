"""One subscriber connection's downlink adaptation: `adaptation.DownlinkController` applied to real consumers.

The connection's tick hands us the `PacketResult`s parsed from the subscriber's transport-wide feedback and
calls us about every 100 ms; we measure what each consumed producer brings in, let the controller decide,
and apply its `Decision`: a layer per video consumer, pause/resume with `PauseReason.BANDWIDTH`, and probe
clusters sent as padding-only RTX packets at the prober's spacing (the I/O shell wakes us for each one via
`probe_due_at`). Audio consumers are never touched. Nothing here runs per forwarded packet.

Until the subscriber's first transport-cc feedback arrives the adapter stays disengaged, so a client that
does not send feedback (aiortc answers with REMB only) keeps the plain "highest flowing layer" policy
instead of being judged on an estimate nothing feeds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from adaptation import (
    AudioOnlyEntered,
    CongestionState,
    ControllerConfig,
    Decision,
    DownlinkController,
    LayerState,
    ProbeCluster,
    VideoResumed,
    VideoTrack,
)
from adaptation.allocator import PauseReason as AllocPause
from adaptation.prober import ProberConfig
from sfu.consumer import Consumer, PauseReason
from sfu.params import MediaKind
from sfu.producer import RecvStream
from sfu.stats import MediaStats

if TYPE_CHECKING:
    from adaptation.types import PacketResult

log = logging.getLogger("confidant.sfu")

# adaptation/controller.py: `on_timer` about every 100 ms.
ADAPT_INTERVAL = 0.1
# A layer counts as flowing for allocation once its rate has been measured this long (as the simulator's
# FIRST_MEASURE_S): the first buckets of the meter under-read a stream that has just started.
MEASURED_AFTER = 1.0

# A 15 ms cluster (libwebrtc's minimum) fits in the token bucket of a shaped link and proves room that is
# not there; a wrong return from audio-only is a visible flap. 100 ms is libwebrtc's newer initial probe
# duration (research/congestion.md section 2.1); LiveKit probes for 200 ms and longer.
LIVE_CONFIG = ControllerConfig(prober=ProberConfig(min_duration_s=0.1))


class DownlinkListener(Protocol):
    """What signalling hears about one subscriber connection as a whole."""

    def on_audio_only(self, active: bool, reason: str) -> None: ...


@dataclass
class DownlinkSnapshot:
    """Per-subscriber state for metrics."""

    estimate_bps: float
    state: CongestionState
    audio_only: bool
    audio_only_s: float
    layer_switches: int
    engaged: bool


@dataclass
class _Probe:
    cluster: ProbeCluster
    started: float
    packets: int = 0
    bytes: int = 0


class DownlinkAdapter:
    """Owns the `DownlinkController` of one subscriber connection and applies its decisions."""

    def __init__(
        self,
        consumers: dict[str, Consumer],
        *,
        stats: MediaStats,
        config: ControllerConfig = LIVE_CONFIG,
        listener: DownlinkListener | None = None,
    ) -> None:
        self.controller = DownlinkController(config)
        self.listener = listener
        self._consumers = consumers  # the connection's own table, by consumer id
        self._stats = stats
        self.engaged = False
        self.estimate_bps = config.estimator.aimd.start_bps
        self.state = CongestionState.NORMAL
        self.audio_only = False
        self._audio_only_since: float | None = None
        self._audio_only_total = 0.0
        self.layer_switches = 0
        self._next_timer = 0.0  # a decision without feedback is due (feedback postpones it)
        self._next_media = 0.0  # the measured layers are read again
        self._probe: _Probe | None = None
        self.sending_cluster: int | None = None  # read per packet by the connection: a plain attribute
        # Until video is first granted the estimate is only the start value plus what early probes proved:
        # a track it cannot fit keeps its lowest layer while the controller probes, instead of pausing at
        # every join. The fallback's 1.5 s rule still sends a link that really is too thin to audio-only.
        self._starting = True
        self.last_decision: Decision | None = None
        self._tracks: dict[str, VideoTrack] = {}  # what `_set_media` gave the controller last, by consumer id

    # -- inputs ------------------------------------------------------------------------------------

    def tick(self, results: list[PacketResult], *, now: float) -> None:
        """Called by the connection's tick with the feedback results gathered since the last call.

        One decision per feedback report, or per `ADAPT_INTERVAL` when none comes: the controller's timer
        work (probe timeouts, the fallback's clocks) rides on the feedback decision instead of costing a
        second one, which halves the decisions while feedback flows every ~100 ms.
        """
        if results and not self.engaged:
            self.engaged = True
            self._next_media = now
        if not self.engaged:
            return
        if now >= self._next_media:
            self._next_media = now + ADAPT_INTERVAL
            self._set_media(now)
        if results or now >= self._next_timer:
            self._next_timer = now + ADAPT_INTERVAL
            decision = self.controller.on_update(results, now=now)
            if decision is None:  # the last decision stands
                self.estimate_bps = self.controller.estimator.target_bps
            else:
                self._apply(decision, now)

    def _set_media(self, now: float) -> None:
        audio = 0.0
        tracks: list[VideoTrack] = []
        previous = self._tracks
        for consumer in self._consumers.values():
            reason = consumer.pause_reason
            if consumer.closed or (reason is not PauseReason.NONE and reason is not PauseReason.BANDWIDTH):
                continue  # held or muted streams send nothing and are not ours to resume
            streams = consumer.producer.streams
            if consumer.kind is MediaKind.AUDIO:
                measured = 0.0
                for s in streams:
                    measured += s.measure(now)
                audio += measured
                continue
            pinned = consumer.pinned_layer
            counts = [
                (pinned is None or pinned == i) and self._counts(s, now) for i, s in enumerate(streams)
            ]
            cap = consumer.preferred_layer if pinned is None else None
            if cap is not None:
                # Layers above the subscriber's size preference get no budget and no probes; when none that
                # low flows, the lowest flowing one stands in (as Consumer.update_layer would forward it).
                under = [c and i <= cap for i, c in enumerate(counts)]
                if True in counts and True not in under:
                    under[counts.index(True)] = True
                counts = under
            # The meters move every 250 ms and this runs every 100 ms: most of the time the track is the
            # same as last time, and the controller gets the same objects back.
            old = previous.get(consumer.id)
            old_layers = old.layers if old is not None and len(old.layers) == len(streams) else None
            layers: list[LayerState] = []
            for i, s in enumerate(streams):
                bps = s.measure(now)
                since = s.flowing_since if counts[i] else None
                layer = old_layers[i] if old_layers is not None else None
                if layer is None or layer.bitrate_bps != bps or layer.flowing_since != since:
                    layer = LayerState(bps, since)
                    old_layers = None
                layers.append(layer)
            if old is not None and old_layers is not None:
                tracks.append(old)
            else:
                tracks.append(VideoTrack(consumer.id, tuple(layers)))
        self._tracks = {t.track_id: t for t in tracks}
        self.controller.set_media(audio, tracks)

    @staticmethod
    def _counts(stream: RecvStream, now: float) -> bool:
        since = stream.flowing_since
        return since is not None and stream.flowing(now) and now - since >= MEASURED_AFTER

    @property
    def next_timer(self) -> float | None:
        """When `tick` wants to run again without new feedback (None: not engaged, only feedback wakes it)."""
        return min(self._next_timer, self._next_media) if self.engaged else None

    # -- applying a decision -----------------------------------------------------------------------

    def _apply(self, decision: Decision, now: float) -> None:
        self.last_decision = decision
        self.estimate_bps = decision.target_bps
        self.state = decision.state
        stats = self._stats
        consumers = self._consumers
        for track in decision.allocation.tracks:
            consumer = consumers.get(track.track_id)
            if consumer is None or consumer.closed:
                continue
            layer = track.layer
            if track.paused is AllocPause.INSUFFICIENT_BANDWIDTH and self._starting:
                layer = 0
            elif track.paused in (AllocPause.INSUFFICIENT_BANDWIDTH, AllocPause.AUDIO_ONLY):
                if consumer.pause_reason is PauseReason.NONE:
                    consumer.set_paused(PauseReason.BANDWIDTH)
                continue
            if consumer.pause_reason is PauseReason.BANDWIDTH:
                consumer.set_paused(PauseReason.NONE)
                consumer.request_keyframe(now=now)  # resuming waits for a keyframe
            if track.layer is not None:
                self._starting = False
            if layer is not None and layer != consumer.adapted_layer:
                if consumer.adapted_layer is not None:
                    self.layer_switches += 1
                    stats.layer_switches += 1
                consumer.set_adapted_layer(layer, now=now)
        for event in decision.events:
            if isinstance(event, AudioOnlyEntered):
                    self._set_audio_only(True, event.reason.value, now)
            elif isinstance(event, VideoResumed):
                self._set_audio_only(False, event.reason.value, now)
        result = decision.probe_result
        if result is not None:
            log.debug("probe result cluster=%d goal_bps=%.0f bps=%s send=%s recv=%s failure=%s", result.cluster_id,
                     result.goal_bps, result.bps, result.send_bps, result.receive_bps,
                     result.failure.value if result.failure else None)
            self._starting = False
            if result.succeeded:
                stats.probes_succeeded += 1
            else:
                stats.probes_failed += 1
        if decision.probe is not None and self._carrier() is not None:
            log.debug("probe start cluster=%d target_bps=%.0f packets=%d bytes=%d",
                     decision.probe.cluster_id, decision.probe.target_bps, decision.probe.min_packets,
                     decision.probe.min_bytes)
            self._probe = _Probe(decision.probe, now)
            self.sending_cluster = decision.probe.cluster_id
            stats.probes_sent += 1

    def _set_audio_only(self, active: bool, reason: str, now: float) -> None:
        if active == self.audio_only:
            return
        self.audio_only = active
        log.info("downlink audio_only=%s reason=%s estimate_bps=%.0f", active, reason, self.estimate_bps)
        if active:
            self._audio_only_since = now
            self._stats.audio_only_entered += 1
        else:
            if self._audio_only_since is not None:
                self._audio_only_total += now - self._audio_only_since
            self._audio_only_since = None
            self._stats.audio_only_exited += 1
        if self.listener is not None:
            self.listener.on_audio_only(active, reason)

    # -- probes ------------------------------------------------------------------------------------

    @property
    def probe_due_at(self) -> float | None:
        """When the next probe packet should leave (None: no cluster in progress)."""
        p = self._probe
        if p is None:
            return None
        return p.started + p.bytes * 8.0 / p.cluster.target_bps

    def send_probes(self, *, now: float) -> float | None:
        """Top the cluster up with padding to its rate by `now`; returns when the next packet is due."""
        p = self._probe
        if p is None:
            return None
        carrier = self._carrier()
        if carrier is None:
            self._end_probe()  # nothing can carry padding: the prober times the cluster out
            return None
        c = p.cluster
        while p.packets < c.min_packets or p.bytes < c.min_bytes:
            due = p.started + p.bytes * 8.0 / c.target_bps
            if due > now:
                return due
            size = carrier.send_padding(c.packet_size, c.cluster_id, now=now)
            self._count(p, size, now)
        return None

    def on_media_sent(self, size: int, *, now: float) -> None:
        """A media packet left while a cluster is being sent (the connection tagged it with the cluster)."""
        p = self._probe
        if p is not None:
            self._count(p, size, now)

    def _count(self, p: _Probe, size: int, now: float) -> None:
        c = p.cluster
        self.controller.on_probe_sent(c.cluster_id, size, now=now)
        p.packets += 1
        p.bytes += size
        if p.packets >= c.min_packets and p.bytes >= c.min_bytes:
            self._end_probe()

    def _end_probe(self) -> None:
        self._probe = None
        self.sending_cluster = None

    def _carrier(self) -> Consumer | None:
        """A video consumer with RTX to carry padding; a paused one is as good as any (RTX is separate) except
        a held one: during a private check-in the held must get not a packet on the pair's SSRCs."""
        for consumer in self._consumers.values():
            if consumer.kind is MediaKind.VIDEO and consumer.can_pad and consumer.pause_reason is not PauseReason.HELD:
                return consumer
        return None

    # -- metrics -----------------------------------------------------------------------------------

    def snapshot(self, *, now: float) -> DownlinkSnapshot:
        total = self._audio_only_total
        if self._audio_only_since is not None:
            total += now - self._audio_only_since
        return DownlinkSnapshot(self.estimate_bps, self.state, self.audio_only, total, self.layer_switches,
                                self.engaged)
