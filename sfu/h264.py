"""H.264 RTP payload inspection (RFC 6184): keyframe detection only; the SFU never decodes."""

from __future__ import annotations

from typing import Final

__all__ = ["is_keyframe", "nal_types"]

_IDR: Final = 5  # coded slice of an IDR picture (H.264 table 7-1)
_SPS: Final = 7  # sequence parameter set: browsers send SPS/PPS right before each IDR
_STAP_A: Final = 24  # RFC 6184 section 5.7.1
_FU_A: Final = 28  # RFC 6184 section 5.8
_KEY_TYPES: Final = frozenset((_IDR, _SPS))


def nal_types(payload: bytes | memoryview) -> list[int]:
    """NAL unit types that start in this payload (for FU-A only when the S bit is set). Never raises."""
    if not payload:
        return []
    nal = payload[0] & 0x1F
    if nal == _STAP_A:
        out = []
        i = 1
        while i + 2 < len(payload):
            size = payload[i] << 8 | payload[i + 1]
            if size == 0 or i + 2 + size > len(payload):
                break  # truncated aggregate: report what was complete
            out.append(payload[i + 2] & 0x1F)
            i += 2 + size
        return out
    if nal == _FU_A:
        if len(payload) >= 2 and payload[1] & 0x80:  # S bit: first fragment
            return [payload[1] & 0x1F]
        return []
    if 1 <= nal <= 23:
        return [nal]
    return []


def is_keyframe(payload: bytes | memoryview) -> bool:
    """True when the payload starts an IDR picture or carries an SPS (single NAL, STAP-A or FU-A start)."""
    return any(t in _KEY_TYPES for t in nal_types(payload))
