"""Payload types of one subscribe connection: each video m-section gets its own codec and RTX pair.

Receivers that route RTP in a BUNDLE by payload type (aiortc's RtpRouter: by SSRC, else by a PT unique to
one receiver; it never registers the RTX SSRC from `a=ssrc-group:FID`) can route a retransmission only if
its RTX PT belongs to one m-section. Sharing one RTX PT across video sections discards every RTX packet.

Rules (RFC 8843 section 7.5 and Chrome's BUNDLE check: a PT means one codec configuration across the
bundle; an m-section must keep its PTs while it carries its track):
- a PT, once given a meaning on a connection, keeps that meaning (VP8, or rtx with a given apt);
- a new m-section gets a fresh pair while any is left (a receiver may still hold an inactive section's PTs);
- then a pair of the same codec that no live m-section holds; then a live pair of the same codec (valid
  SDP; RTX is then routable only by receivers that map RTX SSRCs, such as browsers).
"""

from __future__ import annotations

from dataclasses import replace

from sfu.params import Codec

# RFC 3551 section 6: 96-127 dynamic; 35-63 unassigned, outside 64-95 that rtcp-mux must avoid
# (RFC 5761 section 4); browsers allocate from the same two ranges.
_POOL = tuple(range(96, 128)) + tuple(range(35, 64))


def _meaning(codec: Codec) -> tuple[str, int, int, str]:
    return (codec.mime.lower(), codec.clock_rate, codec.channels, codec.fmtp)


class PayloadTypes:
    """Hands out payload types for one subscribe connection; `reserved` PTs (audio) are never given."""

    def __init__(self, reserved: set[int]) -> None:
        self._free = [pt for pt in _POOL if pt not in reserved]
        self._pairs: dict[tuple[int, int], tuple[str, int, int, str]] = {}  # (pt, rtx pt) -> codec meaning

    def assign(self, codec: Codec, live: set[tuple[int, int]]) -> Codec:
        """`codec` with its own (PT, RTX PT) pair; `live` holds the pairs of m-sections carrying a track.

        Raises ValueError when every PT already means another codec on this connection."""
        if codec.rtx_payload_type is None:
            return codec  # audio: no RTX, routed by SSRC; every audio section shares its PT
        meaning = _meaning(codec)
        if len(self._free) >= 2:
            pair = (self._free.pop(0), self._free.pop(0))
            self._pairs[pair] = meaning
        else:
            same = [p for p, m in self._pairs.items() if m == meaning]
            if not same:
                raise ValueError(f"no payload type left for {codec.mime}")
            pair = next((p for p in same if p not in live), same[0])
        return replace(codec, payload_type=pair[0], rtx_payload_type=pair[1])
