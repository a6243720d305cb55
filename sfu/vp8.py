"""VP8 RTP payload descriptor (RFC 7741 section 4.2): parsing, keyframe detection, picture-id rewriting.

The SFU never decodes: it reads the descriptor to find keyframes and temporal layers, and rewrites
PictureID / TL0PICIDX so a subscriber sees one continuous stream across simulcast layer switches.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Vp8Descriptor", "Vp8Error", "Vp8Munger", "is_keyframe", "keyframe_size", "parse_descriptor"]

# RFC 6386 section 9.1: a key frame's uncompressed data chunk is the 3-byte frame tag, the start code
# 0x9d 0x01 0x2a, then 16-bit little-endian width and height (14 bits of size, 2 bits of upscaling).
_START_CODE = b"\x9d\x01\x2a"
_KEYFRAME_HEADER = 10


class Vp8Error(ValueError):
    """A VP8 payload too short for the descriptor it announces."""


@dataclass(frozen=True, slots=True)
class Vp8Descriptor:
    start: bool  # S: first packet of a partition
    part_id: int  # PID, 3 bits
    non_reference: bool  # N
    picture_id: int | None
    picture_id_15bit: bool  # M: picture id is 15 bits wide
    tl0picidx: int | None
    tid: int | None
    layer_sync: bool  # Y
    keyidx: int | None
    size: int  # descriptor length in bytes: the VP8 payload header starts here
    keyframe: bool


def _offsets(payload: bytes | memoryview) -> tuple[int, int, int, int]:
    """(picture id offset or -1, its width 1/2, tl0picidx offset or -1, descriptor size)."""
    n = len(payload)
    if n < 1:
        raise Vp8Error("empty VP8 payload")
    if not payload[0] & 0x80:  # X: no extension byte
        return -1, 0, -1, 1
    if n < 2:
        raise Vp8Error("truncated VP8 extension byte")
    ext = payload[1]
    i = 2
    pid_at, width, tl0_at = -1, 0, -1
    if ext & 0x80:  # I
        if i >= n:
            raise Vp8Error("truncated PictureID")
        pid_at = i
        width = 2 if payload[i] & 0x80 else 1  # M
        i += width
    if ext & 0x40:  # L
        tl0_at = i
        i += 1
    if ext & 0x30:  # T or K share one byte
        i += 1
    if i > n:
        raise Vp8Error("VP8 descriptor overruns the payload")
    return pid_at, width, tl0_at, i


def parse_descriptor(payload: bytes | memoryview) -> Vp8Descriptor:
    pid_at, width, tl0_at, size = _offsets(payload)
    b0 = payload[0]
    ext = payload[1] if b0 & 0x80 else 0
    picture_id = None
    if width == 1:
        picture_id = payload[pid_at] & 0x7F
    elif width == 2:
        picture_id = (payload[pid_at] & 0x7F) << 8 | payload[pid_at + 1]
    tid = keyidx = None
    layer_sync = False
    if ext & 0x30:
        tk = payload[size - 1]
        if ext & 0x20:
            tid = tk >> 6
            layer_sync = bool(tk & 0x20)
        if ext & 0x10:
            keyidx = tk & 0x1F
    start = bool(b0 & 0x10)
    part_id = b0 & 0x07
    # RFC 7741 section 4.3: P bit (lowest bit of the first payload header byte) is 0 for key frames.
    keyframe = start and part_id == 0 and len(payload) > size and not payload[size] & 0x01
    return Vp8Descriptor(start, part_id, bool(b0 & 0x20), picture_id, width == 2,
                         payload[tl0_at] if tl0_at >= 0 else None, tid, layer_sync, keyidx, size, keyframe)


def is_keyframe(payload: bytes | memoryview) -> bool:
    """True for the first packet of a key frame. Never raises: a malformed payload is not a keyframe."""
    try:
        _, _, _, size = _offsets(payload)
    except Vp8Error:
        return False
    b0 = payload[0]
    return b0 & 0x17 == 0x10 and len(payload) > size and not payload[size] & 0x01


def keyframe_size(payload: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from the first packet of a key frame (RFC 6386 section 9.1); None otherwise.

    The SFU reads this to learn each simulcast layer's resolution without decoding. Never raises.
    """
    try:
        _, _, _, size = _offsets(payload)
    except Vp8Error:
        return None
    if payload[0] & 0x17 != 0x10 or len(payload) < size + _KEYFRAME_HEADER or payload[size] & 0x01:
        return None
    header = bytes(payload[size + 3 : size + _KEYFRAME_HEADER])
    if header[:3] != _START_CODE:
        return None
    width = (header[3] | header[4] << 8) & 0x3FFF
    height = (header[5] | header[6] << 8) & 0x3FFF
    if width == 0 or height == 0:
        return None
    return width, height


class Vp8Munger:
    """Keeps PictureID and TL0PICIDX continuous for one subscriber across source-layer switches.

    `switch()` before the first packet of the new layer; the new layer's first picture then follows the
    last one sent (+1), and later pictures keep the same offset. Widths (7/15-bit PictureID) are kept.
    """

    __slots__ = ("_last_pid", "_last_tl0", "_pid_offset", "_pid_switch", "_tl0_offset", "_tl0_switch")

    def __init__(self) -> None:
        self._pid_offset = 0
        self._tl0_offset = 0
        self._last_pid: int | None = None  # highest output picture id (15-bit space)
        self._last_tl0: int | None = None
        self._pid_switch = False
        self._tl0_switch = False

    def switch(self) -> None:
        self._pid_switch = self._tl0_switch = True

    def rewrite(self, payload: bytes | memoryview) -> bytes | memoryview:
        """The payload with rewritten picture id / tl0picidx; the input itself when nothing changes."""
        pid_at, width, tl0_at, size = _offsets(payload)
        out_pid = out_tl0 = -1
        if pid_at >= 0:
            if width == 2:
                in_pid = (payload[pid_at] & 0x7F) << 8 | payload[pid_at + 1]
                mask = 0x7FFF
            else:
                in_pid = payload[pid_at] & 0x7F
                mask = 0x7F
            if self._pid_switch:
                self._pid_switch = False
                if self._last_pid is not None:
                    self._pid_offset = self._last_pid + 1 - in_pid
            out_pid = (in_pid + self._pid_offset) & mask
            last = self._last_pid
            if last is None or 0 < (out_pid - last) & mask <= mask >> 1:
                self._last_pid = out_pid
        if tl0_at >= 0:
            in_tl0 = payload[tl0_at]
            if self._tl0_switch:
                self._tl0_switch = False
                if self._last_tl0 is not None:
                    self._tl0_offset = self._last_tl0 + 1 - in_tl0
            out_tl0 = (in_tl0 + self._tl0_offset) & 0xFF
            last = self._last_tl0
            if last is None or 0 < (out_tl0 - last) & 0xFF <= 0x7F:
                self._last_tl0 = out_tl0
        if (out_pid < 0 or self._pid_offset & 0x7FFF == 0) and (out_tl0 < 0 or self._tl0_offset & 0xFF == 0):
            return payload
        buf = bytearray(payload[:size])  # only the descriptor is edited; the frame data is copied once below
        if out_pid >= 0:
            if width == 2:
                buf[pid_at] = 0x80 | out_pid >> 8
                buf[pid_at + 1] = out_pid & 0xFF
            else:
                buf[pid_at] = out_pid
        if out_tl0 >= 0:
            buf[tl0_at] = out_tl0
        return bytes(buf) + payload[size:]
