"""One subscriber's copy of one producer: layer selection, header rewriting, retransmission."""

from __future__ import annotations

import enum
import random
from typing import TYPE_CHECKING, Protocol

from sfu.layers import choose_layer, layer_for_size
from sfu.munger import SeqMunger, TsMunger
from sfu.nack import RetransmissionBuffer
from sfu.params import ConsumerParams, HeaderExtension, MediaKind
from sfu.rtp import EgressWriter, ExtIds, RtpPacket, parse_rtp
from sfu.stats import DropReason, MediaStats
from sfu.vp8 import Vp8Munger

if TYPE_CHECKING:
    from sfu.producer import Producer

# RFC 3550 section 5.1: the padding count is the packet's last octet.
MAX_PADDING = 255
# DESIGN.md section 3: about 1-2 s of history.
VIDEO_HISTORY = 500
AUDIO_HISTORY = 200


def _level_byte(pkt: RtpPacket) -> int | None:
    """The audio-level extension byte to send (RFC 6464 section 3: the V bit in front of -dBov)."""
    level = pkt.audio_level
    if level is not None and pkt.voice_activity:
        return level | 0x80
    return level


class PauseReason(str, enum.Enum):
    NONE = "none"
    NO_LAYER_FLOWING = "no_layer_flowing"
    BANDWIDTH = "bandwidth"  # set by adaptation: the link cannot carry the lowest layer
    PUBLISHER_MUTED = "publisher_muted"
    HELD = "held"  # set by the session layer (waiting room, private check-in)
    NOT_VISIBLE = "not_visible"  # the subscriber does not show this video (adaptive stream)


class EgressSink(Protocol):
    """The subscriber connection a consumer sends through."""

    def next_tcc_seq(self) -> int: ...

    def send_rtp(self, header: bytes, payload: bytes | memoryview, tcc_seq: int, now: float) -> None: ...

    def send_probe(self, data: bytes, tcc_seq: int, cluster_id: int, *, now: float) -> None: ...

    def remove_consumer(self, consumer: Consumer) -> None: ...


class ConsumerListener(Protocol):
    """What signalling hears from a consumer, to tell the subscriber (and the therapist)."""

    def on_layer_changed(self, consumer: Consumer, layer: int) -> None: ...

    def on_paused(self, consumer: Consumer, reason: PauseReason) -> None: ...

    def on_resumed(self, consumer: Consumer) -> None: ...


class Consumer:
    """Forwards one producer to one subscriber, rewriting SSRC, PT, sequence numbers and timestamps."""

    def __init__(
        self,
        consumer_id: str,
        producer: Producer,
        params: ConsumerParams,
        *,
        sink: EgressSink,
        stats: MediaStats,
        rng: random.Random,
        listener: ConsumerListener | None = None,
    ) -> None:
        self.id = consumer_id
        self.listener = listener
        self.producer = producer
        self.params = params
        self.kind = params.kind
        self.kind_label = params.kind.value
        self.ssrc = params.ssrc
        self.rtx_ssrc = params.rtx_ssrc
        self.closed = False
        self._sink = sink
        self._stats = stats
        ids = params.header_extensions
        self._writer = EgressWriter(
            params.ssrc,
            params.codec.payload_type,
            transport_cc_id=ids.get(HeaderExtension.TRANSPORT_CC),
            audio_level_id=ids.get(HeaderExtension.AUDIO_LEVEL) if params.kind is MediaKind.AUDIO else None,
        )
        self._ext_ids = ExtIds.from_map(dict(ids))
        self._rtx_writer = (
            EgressWriter(params.rtx_ssrc, params.codec.rtx_payload_type,
                         transport_cc_id=ids.get(HeaderExtension.TRANSPORT_CC))
            if params.rtx_ssrc is not None and params.codec.rtx_payload_type is not None
            else None
        )
        self._rtx_seq = rng.randrange(0x10000)
        # Random initial values (RFC 3550 section 5.1); continuity afterwards is the munger's job.
        self._seq = SeqMunger(rng.randrange(0x10000))
        self._ts = TsMunger(params.codec.clock_rate, rng.randrange(0x100000000))
        self._vp8 = Vp8Munger() if producer.simulcast and producer.codec.name == "VP8" else None
        # History only where the subscriber negotiated NACK (RFC 4585): Opus usually is not, and storing
        # every audio packet for repairs nobody can ask for is per-packet work for nothing.
        self._history: RetransmissionBuffer[tuple[bytes, bytes | memoryview]] | None = (
            RetransmissionBuffer(VIDEO_HISTORY if params.kind is MediaKind.VIDEO else AUDIO_HISTORY)
            if "nack" in params.codec.rtcp_feedback
            else None
        )
        # Layer state (video only): what we forward now, what we want, and a pin from the subscriber.
        self.current_layer: int | None = None if params.kind is MediaKind.VIDEO else 0
        self.target_layer: int | None = None if params.kind is MediaKind.VIDEO else 0
        self.pinned_layer: int | None = None
        # The highest layer bandwidth adaptation allows (None: no opinion yet, forward the highest flowing).
        self.adapted_layer: int | None = None
        # Adaptive stream: the size the subscriber renders this video at (device pixels; None: no cap) and
        # whether it shows it at all.
        self.max_size: tuple[int, int] | None = None
        self.visible = True
        self.pause_reason = PauseReason.NONE
        # Sender statistics for SR (RFC 3550 section 6.4.1).
        self.packets_sent = 0
        self.octets_sent = 0
        self.last_out_ts: int | None = None
        self.last_send_time = 0.0
        # Receiver feedback about this stream.
        self.fraction_lost = 0.0
        self.jitter_s = 0.0
        self.rtt_s: float | None = None
        self.layer_switches = 0

    @property
    def paused(self) -> bool:
        return self.pause_reason is not PauseReason.NONE

    # -- hot path --------------------------------------------------------------------------------

    def forward(self, pkt: RtpPacket, payload: memoryview, layer: int, ext_seq: int, ext_ts: int,
                keyframe: bool, now: float) -> None:
        if self.pause_reason is not PauseReason.NONE:
            self._stats.drops[DropReason.CONSUMER_PAUSED] += 1
            return
        if layer != self.current_layer:
            if self.target_layer is None:
                self.target_layer = layer  # first packets of a stream nobody chose a layer for yet
            if layer != self.target_layer or not keyframe:
                self._stats.drops[
                    DropReason.WAITING_FOR_KEYFRAME if layer == self.target_layer else DropReason.LAYER_NOT_SELECTED
                ] += 1
                if layer == self.target_layer:
                    self.producer.request_keyframe(layer, now=now)
                return
            self._switch(ext_seq, ext_ts, now=now)
            self.current_layer = layer
            if self.listener is not None and self.kind is MediaKind.VIDEO:
                self.listener.on_layer_changed(self, layer)
        seq = self._seq.map(ext_seq)
        if seq is None:
            self._stats.drops[DropReason.DUPLICATE] += 1
            return
        ts = self._ts.map(ext_ts, now)
        if self._vp8 is not None:
            payload = self._vp8.rewrite(payload)  # type: ignore[assignment]
        sink = self._sink
        tcc = sink.next_tcc_seq()
        # Positional calls from here on: this runs once per packet per subscriber. Header and payload stay
        # apart: SRTP writes them into its buffer, so no plaintext packet is ever built here.
        header = self._writer.header(pkt.marker, seq, ts, tcc, _level_byte(pkt))
        history = self._history
        if history is not None:
            history.store(seq, (header, payload), now)
        sink.send_rtp(header, payload, tcc, now)
        self.packets_sent += 1
        self.octets_sent += len(payload)
        self.last_out_ts = ts
        self.last_send_time = now
        stats = self._stats
        stats.packets_forwarded[self.kind_label] += 1
        stats.bytes_forwarded[self.kind_label] += len(header) + len(payload)

    def _switch(self, ext_seq: int, ext_ts: int, *, now: float) -> None:
        if self.current_layer is not None:
            self.layer_switches += 1
        self._seq.switch(ext_seq)
        self._ts.switch(ext_ts, now=now)
        if self._vp8 is not None:
            self._vp8.switch()

    # -- feedback from the subscriber ----------------------------------------------------------

    def retransmit(self, seqs: list[int], *, now: float) -> int:
        """Answer a NACK from our history, as RTX when negotiated. Returns how many were resent."""
        if self.pause_reason is not PauseReason.NONE or self._history is None:
            return 0  # a paused stream's subscriber gets no video bytes, repairs included
        sent = 0
        rtt = self.rtt_s if self.rtt_s is not None else 0.1
        for seq in seqs:
            entry = self._history.get(seq, now=now, rtt=rtt)
            if entry is None:
                continue
            header, payload = entry
            try:
                orig = parse_rtp(header, self._ext_ids)
            except ValueError:
                continue
            tcc = self._sink.next_tcc_seq()
            if self._rtx_writer is not None:
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
                out = self._rtx_writer.build_rtx(marker=orig.marker, seq=self._rtx_seq, ts=orig.ts, osn=seq,
                                                 tcc_seq=tcc, payload=payload)
                self._sink.send_rtp(out, b"", tcc, now)
            else:
                header = self._writer.header(orig.marker, seq, orig.ts, tcc, _level_byte(orig))
                self._sink.send_rtp(header, payload, tcc, now)
            sent += 1
        self._stats.retransmissions_sent += sent
        return sent

    @property
    def can_pad(self) -> bool:
        """Whether probes can go out on this stream without touching the media sequence (RTX negotiated)."""
        return self._rtx_writer is not None and not self.closed

    def send_padding(self, size: int, cluster_id: int, *, now: float) -> int:
        """One padding-only RTX packet of about `size` bytes for probe `cluster_id`; returns its real size.

        Padding goes on the RTX SSRC: on the media SSRC it would take sequence numbers the subscriber
        expects media on. Receivers drop it after recording its transport-wide sequence number.
        """
        writer = self._rtx_writer
        assert writer is not None, "check can_pad first"
        tcc = self._sink.next_tcc_seq()
        self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        header = 20 if writer.tcc_id is not None else 12  # fixed header + one-word transport-cc extension
        padding = max(1, min(MAX_PADDING, size - header))
        data = writer.build_padding(seq=self._rtx_seq, ts=self.last_out_ts or 0, tcc_seq=tcc, size=padding)
        self._sink.send_probe(data, tcc, cluster_id, now=now)
        return len(data)

    def request_keyframe(self, *, now: float) -> None:
        """A PLI/FIR from the subscriber: relayed to the publisher for the layer it is getting."""
        layer = self.current_layer if self.current_layer is not None else self.target_layer
        if layer is None:
            layer = len(self.producer.streams) - 1  # nothing chosen yet: the layer automatic choice would pick
        self.producer.request_keyframe(layer, now=now)

    def on_report(self, *, fraction_lost: float, jitter_s: float, rtt_s: float | None) -> None:
        self.fraction_lost = fraction_lost
        self.jitter_s = jitter_s
        if rtt_s is not None:
            self.rtt_s = rtt_s

    # -- control -----------------------------------------------------------------------------------

    def pin_layer(self, layer: int | None, *, now: float | None = None) -> None:
        """Pin this subscriber to one simulcast layer (0 = lowest), or None for automatic choice. With `now`,
        the layer is chosen at once and dynacast resumes the pinned layer at the publisher if it is paused."""
        if layer is not None and not 0 <= layer < len(self.producer.streams):
            raise ValueError(f"layer {layer} out of range for {len(self.producer.streams)} layers")
        self.pinned_layer = layer
        if now is not None:
            self.update_layer(now=now)
            self.producer.update_dynacast(now=now)

    def set_preference(self, max_size: tuple[int, int] | None, *, visible: bool, now: float) -> None:
        """The subscriber's rendered size (device pixels; None: no cap) and visibility for this video.

        A hidden video is paused (NOT_VISIBLE) unless a stronger reason holds it; shown again it resumes
        at once on a keyframe. The size caps the layer at the smallest one that covers it.
        """
        if self.kind is not MediaKind.VIDEO or self.closed:
            return
        self.max_size = max_size
        self.visible = visible
        if not visible and self.pause_reason in (PauseReason.NONE, PauseReason.BANDWIDTH):
            self.set_paused(PauseReason.NOT_VISIBLE)
        elif visible and self.pause_reason is PauseReason.NOT_VISIBLE:
            self.set_paused(PauseReason.NONE)
        self.update_layer(now=now)
        if self.pause_reason is PauseReason.NONE and self.current_layer is None:
            self.request_keyframe(now=now)
        self.producer.update_dynacast(now=now)

    @property
    def preferred_layer(self) -> int | None:
        """The highest layer the subscriber's rendered size needs (None: no preference)."""
        if self.max_size is None or len(self.producer.streams) < 2:
            return None
        return layer_for_size(self.producer.layer_sizes(), *self.max_size)

    @property
    def wanted_layer(self) -> int | None:
        """The highest layer this subscriber could use, for dynacast: a pin, else its size preference, else
        the top layer; None when it shows no video (hidden, or held by the care rules)."""
        if self.kind is not MediaKind.VIDEO or not self.visible or self.pause_reason is PauseReason.HELD:
            return None
        if self.pinned_layer is not None:
            return self.pinned_layer
        preferred = self.preferred_layer
        return len(self.producer.streams) - 1 if preferred is None else preferred

    def set_paused(self, reason: PauseReason) -> None:
        """Pause (any reason but NONE) or resume. Resuming video waits for a keyframe; resuming a video the
        subscriber hides leaves it paused as NOT_VISIBLE."""
        if reason is PauseReason.NONE and not self.visible:
            reason = PauseReason.NOT_VISIBLE
        if reason is self.pause_reason:
            return
        self.pause_reason = reason
        if reason is PauseReason.NONE and self.kind is MediaKind.VIDEO:
            self.current_layer = None
        if self.listener is not None:
            if reason is PauseReason.NONE:
                self.listener.on_resumed(self)
            else:
                self.listener.on_paused(self, reason)

    def set_adapted_layer(self, layer: int | None, *, now: float) -> None:
        """The highest layer the subscriber's bandwidth allows (adaptation's choice); a pin still wins."""
        self.adapted_layer = layer
        self.update_layer(now=now)

    def update_layer(self, *, now: float) -> None:
        """Choose the layer to forward (sfu/layers.py): the pinned one if flowing, else the highest flowing
        one that both the size preference and adaptation allow (the lowest flowing one when none is)."""
        if self.kind is not MediaKind.VIDEO or self.closed:
            return
        target = choose_layer(self.producer.flowing_layers(now=now), pinned=self.pinned_layer,
                              preferred=self.preferred_layer, adapted=self.adapted_layer)
        if target is None:
            return  # keep the current choice: the publisher may just be between packets
        if target != self.target_layer:
            self.target_layer = target
            if target != self.current_layer:
                self.producer.request_keyframe(target, now=now)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self in self.producer.consumers:
            self.producer.consumers.remove(self)
        self._sink.remove_consumer(self)
