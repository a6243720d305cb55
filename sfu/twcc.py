"""Transport-wide congestion control (draft-holmer-rmcat-transport-wide-cc-extensions-01).

`TwccRecorder`: the SFU receiving from a publisher records arrivals and builds feedback every ~100 ms
so the browser's send-side estimator works. `TwccSender`: the SFU sending to a subscriber stamps its own
transport-wide seqs and turns the subscriber's feedback into `PacketResult`s for the estimator.
"""

from __future__ import annotations

from typing import Final

from adaptation.types import PacketResult
from sfu.rtcp import TCC_REFERENCE_US, TCC_TICK_US, TransportCc
from sfu.rtp import SeqUnwrapper

__all__ = ["TwccRecorder", "TwccSender"]

_TICKS_PER_REFERENCE: Final = TCC_REFERENCE_US // TCC_TICK_US  # 256
_MAX_STATUSES: Final = 400  # per feedback packet: keeps it well under one MTU even with 2-byte deltas
_MAX_BACKFILL: Final = 1000  # report at most this many seqs before the first new one as lost
_HISTORY: Final = 2.0  # seconds of sent packets kept for feedback matching


class TwccRecorder:
    """Receive side: arrival times by transport-wide seq, turned into feedback packets on demand."""

    __slots__ = ("_arrivals", "_fb_count", "_media_ssrc", "_next_start", "_sender_ssrc", "_unwrap")

    def __init__(self, sender_ssrc: int, media_ssrc: int) -> None:
        self._sender_ssrc = sender_ssrc
        self._media_ssrc = media_ssrc
        self._unwrap = SeqUnwrapper()
        self._arrivals: dict[int, int] = {}  # ext seq -> arrival in 250 us ticks
        self._next_start: int | None = None  # first seq the next feedback should cover
        self._fb_count = 0

    @property
    def fb_count(self) -> int:
        """Feedback packets built so far, modulo 256 (the wire field)."""
        return self._fb_count

    def record(self, tcc_seq: int, *, now: float, ssrc: int | None = None) -> None:
        """Note one arrival; `ssrc` is the packet's, which the next feedback names as its media source.

        libwebrtc (`RTCPReceiver::HandleTransportFeedback`) drops feedback whose media SSRC is not one of
        the sender's own streams, so a constant such as 0 silently disables the browser's estimator.
        """
        if ssrc is not None:
            self._media_ssrc = ssrc
        ext = self._unwrap.unwrap(tcc_seq)
        # Integer ticks from absolute time, so deltas never accumulate rounding error.
        self._arrivals.setdefault(ext, round(now * 1_000_000 / TCC_TICK_US))

    def build_feedback(self, *, now: float) -> list[bytes]:
        """Serialized transport-cc packets for everything recorded since the last call (lost = not received)."""
        arrivals = self._arrivals
        if not arrivals:
            return []
        seqs = sorted(arrivals)
        start, end = seqs[0], seqs[-1]
        if self._next_start is not None and start > self._next_start:
            # Holes since the last feedback are losses the sender must hear about.
            start = max(self._next_start, start - _MAX_BACKFILL)
        out: list[bytes] = []
        base = start
        while base <= end:
            packets: list[tuple[int, int | None]] = []
            ref: int | None = None
            prev = 0
            seq = base
            while seq <= end and len(packets) < _MAX_STATUSES:
                tick = arrivals.get(seq)
                if tick is None:
                    packets.append((seq & 0xFFFF, None))
                else:
                    if ref is None:
                        ref = tick // _TICKS_PER_REFERENCE
                        prev = ref * _TICKS_PER_REFERENCE
                    delta = tick - prev
                    if not -0x8000 <= delta <= 0x7FFF:
                        break  # does not fit a 16-bit delta: the next packet starts from its own reference
                    packets.append((seq & 0xFFFF, delta * TCC_TICK_US))
                    prev = tick
                seq += 1
            if ref is None:
                base = seq  # a run of losses longer than one packet's worth: too stale to be worth reporting
                continue
            # Trailing losses are reported by the next packet, which starts at them.
            while packets[-1][1] is None:
                packets.pop()
                seq -= 1
            fb = TransportCc(self._sender_ssrc, self._media_ssrc, base & 0xFFFF, ref & 0xFFFFFF,
                             self._fb_count, tuple(packets))
            self._fb_count = (self._fb_count + 1) & 0xFF
            out.append(bytes(fb))
            base = seq
        self._next_start = end + 1
        arrivals.clear()
        return out


_RING: Final = 1 << 16  # one slot per 16-bit transport-wide seq


class TwccSender:
    """Send side: our transport-wide seqs and the feedback about them, as `PacketResult`s.

    Sent packets live in flat rings indexed by the 16-bit seq (no object per packet: this runs for every
    egress packet); a slot remembers its unwrapped seq, so a stale slot is never mistaken for a new one.
    """

    __slots__ = ("_cluster", "_ext", "_last_sent", "_next", "_ref_ext", "_size", "_state", "_time")

    def __init__(self, initial_seq: int = 0) -> None:
        self._next = initial_seq & 0xFFFF  # extended: we number the packets, so nothing needs unwrapping
        self._ext = [-1] * _RING
        self._time = [0.0] * _RING
        self._size = [0] * _RING
        self._cluster: list[int | None] = [None] * _RING
        self._state = bytearray(_RING)  # 0 not reported, 1 reported lost, 2 reported received
        self._last_sent = 0.0
        self._ref_ext: int | None = None  # unwrapped 24-bit reference time of the last feedback

    def next_seq(self) -> int:
        """The 16-bit seq for the next packet; `on_sent` records it once it has left."""
        ext = self._next
        self._next = ext + 1
        return ext & 0xFFFF

    def on_sent(self, seq: int, size: int, now: float, probe_cluster: int | None = None) -> None:
        """Positional on purpose: once per packet per subscriber."""
        ext = self._next - ((self._next - seq) & 0xFFFF)  # the latest seq numbered with these 16 bits
        self._ext[seq] = ext
        self._time[seq] = now
        self._size[seq] = size
        self._cluster[seq] = probe_cluster
        self._state[seq] = 0
        self._last_sent = now

    def on_feedback(self, fb: TransportCc, *, now: float) -> list[PacketResult]:
        """Results for packets this feedback tells us about for the first time (or first as received).

        Arrival times are seconds on the receiver's clock, rebuilt from the reference time and deltas.
        """
        # A slot only matches a packet on_sent recorded, so numbered-but-unsent seqs find nothing.
        highest = self._next - 1
        ref = fb.reference_time
        if self._ref_ext is None:
            ref_ext = ref
        else:
            diff = (ref - self._ref_ext) & 0xFFFFFF
            ref_ext = self._ref_ext + (diff - 0x1000000 if diff >= 0x800000 else diff)
        if self._ref_ext is None or ref_ext > self._ref_ext:
            self._ref_ext = ref_ext
        # The feedback's base seq is at most 2^15 behind what we sent last.
        base_ext = highest - ((highest - fb.base_seq) & 0xFFFF)
        t_us = ref_ext * TCC_REFERENCE_US
        exts, times, states = self._ext, self._time, self._state
        horizon = self._last_sent - _HISTORY  # feedback about older packets is too late to be useful
        results: list[PacketResult] = []
        for i, (_, delta) in enumerate(fb.packets):
            ext = base_ext + i
            slot = ext & 0xFFFF
            if delta is not None:
                t_us += delta
            state = states[slot]
            if exts[slot] != ext or times[slot] < horizon or state == 2 or (delta is None and state == 1):
                continue
            if delta is None:
                states[slot] = 1
                arrival = None
            else:
                states[slot] = 2
                arrival = t_us / 1_000_000
            results.append(PacketResult(ext, times[slot], self._size[slot], arrival, self._cluster[slot]))
        return results
