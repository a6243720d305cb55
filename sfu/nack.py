"""NACK handling (RFC 4585 section 6.2.1): egress retransmission history and ingress loss detection."""

from __future__ import annotations

from typing import Final, Generic, TypeVar

__all__ = ["AUDIO_MAX_AGE", "VIDEO_MAX_AGE", "NackGenerator", "RetransmissionBuffer"]

P = TypeVar("P")

VIDEO_MAX_AGE: Final = 2.0  # seconds a video packet stays worth resending (DESIGN.md section 3)
AUDIO_MAX_AGE: Final = 1.0
_MIN_RESEND_INTERVAL: Final = 0.02  # floor on the per-packet resend spacing when the RTT is tiny
_NEVER: Final = float("-inf")


class RetransmissionBuffer(Generic[P]):
    """Per outgoing stream: the last `capacity` packets by 16-bit output seq, ready to resend (pre-SRTP).

    `P` is whatever the owner keeps per packet (the consumer: header and payload, never joined).

    A ring indexed by seq, so memory is bounded and lookups are one index; entries are validated by
    seq and age, so a slot reused after 65,536 packets is never confused with an old one.
    """

    __slots__ = ("_cap", "_data", "_max_age", "_sent", "_seq", "_stored")

    def __init__(self, capacity: int = 500, *, max_age: float = VIDEO_MAX_AGE) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._cap = capacity
        self._max_age = max_age
        self._seq: list[int] = [-1] * capacity
        self._data: list[P | None] = [None] * capacity
        self._stored: list[float] = [0.0] * capacity
        self._sent: list[float] = [_NEVER] * capacity  # last retransmission

    def store(self, seq: int, packet: P, now: float) -> None:
        i = seq % self._cap
        self._seq[i] = seq
        self._data[i] = packet
        self._stored[i] = now
        self._sent[i] = _NEVER

    def get(self, seq: int, *, now: float, rtt: float = 0.0) -> P | None:
        """The packet to resend, or None: unknown/evicted, too old, or already resent within one RTT."""
        i = seq % self._cap
        if self._seq[i] != seq or now - self._stored[i] > self._max_age:
            return None
        # A NACK repeated before our resend could have arrived is a duplicate request, not a new loss.
        if now - self._sent[i] < max(rtt, _MIN_RESEND_INTERVAL):
            return None
        self._sent[i] = now
        return self._data[i]


_MAX_RETRIES: Final = 10
_MAX_AGE: Final = 1.0  # give up on a missing packet after this long
_MAX_MISSING: Final = 500  # bound on tracked holes (memory and NACK size)
_MAX_PER_NACK: Final = 120  # seqs per due() call: ~30 PID/BLP pairs at worst, fits one RTCP packet
_KEYFRAME_CLEARS_ABOVE: Final = 100  # a keyframe obsoletes older holes once there are this many
_MAX_JUMP: Final = 3000  # a forward jump this large is a stream restart, not a loss burst


class _Missing:
    __slots__ = ("last_sent", "retries", "since")

    def __init__(self, since: float) -> None:
        self.since = since
        self.retries = 0
        self.last_sent = float("-inf")


class NackGenerator:
    """Per publisher stream: tracks holes in the extended sequence and says which ones to NACK now."""

    __slots__ = ("_highest", "_missing")

    def __init__(self) -> None:
        self._highest: int | None = None
        self._missing: dict[int, _Missing] = {}

    @property
    def missing_count(self) -> int:
        return len(self._missing)

    def on_packet(self, ext_seq: int, *, now: float, is_keyframe: bool = False) -> None:
        highest = self._highest
        missing = self._missing
        if highest is None or ext_seq - highest > _MAX_JUMP:
            self._highest = ext_seq
            missing.clear()
            return
        if ext_seq <= highest:
            missing.pop(ext_seq, None)  # late arrival or retransmission filled the hole
            return
        if ext_seq > highest + 1:
            start = max(highest + 1, ext_seq - _MAX_MISSING)
            for seq in range(start, ext_seq):
                missing[seq] = _Missing(now)
        self._highest = ext_seq
        if is_keyframe and len(missing) > _KEYFRAME_CLEARS_ABOVE:
            # The decoder restarts from this keyframe: older holes are no longer worth repairing.
            missing.clear()
        elif len(missing) > _MAX_MISSING:
            for seq in list(missing)[: len(missing) - _MAX_MISSING]:
                del missing[seq]

    def due(self, *, now: float, rtt: float) -> list[int]:
        """16-bit seqs to NACK now (oldest first); each hole retried at most 10 times, one RTT apart."""
        interval = max(rtt, _MIN_RESEND_INTERVAL)
        out: list[int] = []
        expired: list[int] = []
        for seq, m in self._missing.items():
            if now - m.since > _MAX_AGE or m.retries >= _MAX_RETRIES:
                expired.append(seq)
                continue
            if len(out) < _MAX_PER_NACK and now - m.last_sent >= interval:
                m.retries += 1
                m.last_sent = now
                out.append(seq & 0xFFFF)
        for seq in expired:
            del self._missing[seq]
        return out
