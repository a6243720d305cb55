"""Sequence-number and timestamp rewriting for one outgoing stream (after mediasoup's SeqManager, LiveKit's munger).

Inputs are extended (unwrapped) values from the publisher stream currently forwarded; outputs are wire
widths. A subscriber's output must stay continuous across layer/source switches: libsrtp refuses a
sequence number more than 2^15 ahead or 1,024 behind the last one on an SSRC (DESIGN.md section 1).
Decisions are return values; `drop_reason` says why the last `map` returned None.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from sfu.stats import DropReason

__all__ = ["SeqMunger", "TsMunger"]

_WINDOW: Final = 1024  # reordering window for duplicate detection (libsrtp's replay window size)
_WINDOW_MASK: Final = (1 << _WINDOW) - 1
_MAX_SEGMENTS: Final = 64  # offset changes remembered for late packets and NACK translation
_NACK_HISTORY: Final = 4096  # output seqs older than this are not translated back


class SeqMunger:
    """Maps extended input sequence numbers to a continuous 16-bit output sequence.

    Gaps are kept (a lost input leaves a hole the subscriber can NACK); inputs declared skipped with
    `skip` (padding-only, filtered layers) leave no hole when they are the newest.
    """

    __slots__ = ("_floor", "_highest", "_initial", "_last_out", "_offset", "_seen", "_segments", "drop_reason")

    def __init__(self, initial_out_seq: int) -> None:
        self._initial = initial_out_seq & 0xFFFF
        self._offset = 0  # out_ext = in_ext - offset
        self._highest: int | None = None  # highest input handled (forwarded or skipped)
        self._floor = 0  # inputs below this predate the last switch
        self._seen = 0  # bit k: input highest - k was handled
        self._last_out: int | None = None  # highest output, extended
        # (first input, offset) of each stretch with one offset; newest last.
        self._segments: deque[tuple[int, int]] = deque(maxlen=_MAX_SEGMENTS)
        self.drop_reason: DropReason | None = None

    @property
    def last_out_seq(self) -> int | None:
        return None if self._last_out is None else self._last_out & 0xFFFF

    def switch(self, ext_seq: int) -> None:
        """The next forwarded input is `ext_seq` from another layer/source: continue right after the last output."""
        out = self._initial if self._last_out is None else self._last_out + 1
        self._offset = ext_seq - out
        self._highest = ext_seq - 1
        self._floor = ext_seq
        self._seen = 0
        self._segments.clear()  # the old input space means nothing now
        self._segments.append((ext_seq, self._offset))

    def map(self, ext_seq: int) -> int | None:
        """Output seq for this input, or None (duplicate / too old: see `drop_reason`)."""
        highest = self._highest
        if highest is None:
            self.switch(ext_seq)
            highest = ext_seq - 1
        if ext_seq > highest:
            d = ext_seq - highest
            self._seen = ((self._seen << d) | 1) & _WINDOW_MASK if d < _WINDOW else 1
            self._highest = ext_seq
            out = ext_seq - self._offset
            self._last_out = out
            return out & 0xFFFF
        k = highest - ext_seq
        if ext_seq < self._floor or k >= _WINDOW:
            self.drop_reason = DropReason.TOO_OLD
            return None
        if self._seen >> k & 1:
            self.drop_reason = DropReason.DUPLICATE
            return None
        offset = self._offset_for_input(ext_seq)
        if offset is None:
            self.drop_reason = DropReason.TOO_OLD
            return None
        self._seen |= 1 << k
        return (ext_seq - offset) & 0xFFFF

    def skip(self, ext_seq: int) -> None:
        """An input deliberately not forwarded: if it is the newest, later outputs close up over it."""
        highest = self._highest
        if highest is None:
            self.switch(ext_seq + 1)
            return
        if ext_seq > highest:
            d = ext_seq - highest
            self._seen = ((self._seen << d) | 1) & _WINDOW_MASK if d < _WINDOW else 1
            self._highest = ext_seq
            self._offset += 1
            self._segments.append((ext_seq + 1, self._offset))
        elif highest - ext_seq < _WINDOW:
            self._seen |= 1 << (highest - ext_seq)  # too late to close the hole; keep it

    def _offset_for_input(self, ext_seq: int) -> int | None:
        for first, offset in reversed(self._segments):
            if ext_seq >= first:
                return offset
        return None

    def out_to_in(self, out_seq: int) -> int | None:
        """The extended input seq behind a (NACKed) output seq, or None if unknown, too old or skipped."""
        last = self._last_out
        if last is None:
            return None
        age = (last - out_seq) & 0xFFFF
        if age > _NACK_HISTORY:
            return None
        out_ext = last - age
        segments = self._segments
        for i in range(len(segments) - 1, -1, -1):
            first, offset = segments[i]
            if out_ext >= first - offset:
                ext_seq = out_ext + offset
                # A skipped input's slot was given to the next one; inside a stretch every slot is real.
                return ext_seq if ext_seq >= self._floor else None
        return None


class TsMunger:
    """Maps extended input RTP timestamps to a continuous 32-bit output timeline.

    After a switch the output advances by the wall time elapsed since the last forwarded packet (at
    least one tick), so the subscriber's jitter buffer sees real time pass, not the new source's clock.
    """

    __slots__ = ("_clock_rate", "_initial", "_last_now", "_last_out", "_offset")

    def __init__(self, clock_rate: int, initial_out_ts: int) -> None:
        self._clock_rate = clock_rate
        self._initial = initial_out_ts & 0xFFFFFFFF
        self._offset: int | None = None  # out_ext = in_ext - offset
        self._last_out = 0  # highest output, extended
        self._last_now = 0.0  # when it was forwarded

    @property
    def last_out_ts(self) -> int | None:
        """Highest output timestamp (32-bit) and, with `last_sent_at`, what a Sender Report extrapolates from."""
        return None if self._offset is None else self._last_out & 0xFFFFFFFF

    @property
    def last_sent_at(self) -> float:
        return self._last_now

    def switch(self, ext_ts: int, *, now: float) -> None:
        """The next forwarded input timestamp is `ext_ts` from another layer/source."""
        if self._offset is None:
            out = self._initial
        else:
            out = self._last_out + max(1, round((now - self._last_now) * self._clock_rate))
        self._offset = ext_ts - out
        self._last_out = out
        self._last_now = now

    def map(self, ext_ts: int, now: float) -> int:
        """The 32-bit output timestamp for a forwarded packet."""
        offset = self._offset
        if offset is None:
            self.switch(ext_ts, now=now)
            offset = ext_ts - self._initial
        out = ext_ts - offset
        if out >= self._last_out:
            self._last_out = out
            self._last_now = now
        return out & 0xFFFFFFFF
