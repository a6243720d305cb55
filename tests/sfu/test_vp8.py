from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.vp8 import Vp8Descriptor, Vp8Error, Vp8Munger, is_keyframe, keyframe_size, parse_descriptor


def desc(*, s: bool = True, pid: int | None = None, m: bool = True, tl0: int | None = None, tid: int | None = None,
         keyidx: int | None = None, part: int = 0, header: bytes = b"\x10") -> bytes:
    """A VP8 payload: descriptor then `header` (0x10: P bit 0 = key frame; 0x11: inter frame)."""
    x = pid is not None or tl0 is not None or tid is not None or keyidx is not None
    out = bytearray([(0x80 if x else 0) | (0x10 if s else 0) | part])
    if x:
        out.append((0x80 if pid is not None else 0) | (0x40 if tl0 is not None else 0)
                   | (0x20 if tid is not None else 0) | (0x10 if keyidx is not None else 0))
        if pid is not None:
            out += bytes((0x80 | pid >> 8, pid & 0xFF)) if m else bytes((pid,))
        if tl0 is not None:
            out.append(tl0)
        if tid is not None or keyidx is not None:
            out.append(((tid or 0) << 6) | (keyidx or 0))
    return bytes(out) + header


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (desc(), Vp8Descriptor(True, 0, False, None, False, None, None, False, None, 1, True)),
        (desc(s=False, header=b"\x11"), Vp8Descriptor(False, 0, False, None, False, None, None, False, None, 1,
                                                       False)),
        (desc(pid=0x1234, tl0=9, tid=2), Vp8Descriptor(True, 0, False, 0x1234, True, 9, 2, False, None, 6, True)),
        (desc(pid=100, m=False, header=b"\x11"), Vp8Descriptor(True, 0, False, 100, False, None, None, False, None,
                                                               3, False)),
        (desc(pid=5, keyidx=17, part=1), Vp8Descriptor(True, 1, False, 5, True, None, None, False, 17, 5, False)),
        (bytes((0xB0, 0xA0, 0x81, 0x02, 0x60)) + b"\x10",  # N bit, tid 1 with Y
         Vp8Descriptor(True, 0, True, 0x102, True, None, 1, True, None, 5, True)),
        (desc(pid=1, header=b""), Vp8Descriptor(True, 0, False, 1, True, None, None, False, None, 4, False)),
    ],
)
def test_parse_descriptor(payload: bytes, expected: Vp8Descriptor) -> None:
    assert parse_descriptor(payload) == expected
    assert is_keyframe(payload) is expected.keyframe


@pytest.mark.parametrize("payload", [b"", b"\x80", b"\x90\x80", b"\x90\x80\x80", b"\x90\x40", b"\x90\x30"])
def test_truncated(payload: bytes) -> None:
    with pytest.raises(Vp8Error):
        parse_descriptor(payload)
    assert is_keyframe(payload) is False


# Each step: (switch before this packet?, input pid, input tl0, expected output pid, expected output tl0).
@pytest.mark.parametrize(
    "steps",
    [
        pytest.param([(False, 10, 3, 10, 3), (False, 10, 3, 10, 3), (False, 11, 3, 11, 3)], id="no-switch"),
        pytest.param([(False, 10, 3, 10, 3), (True, 500, 77, 11, 4), (False, 500, 77, 11, 4),
                      (False, 501, 78, 12, 5)], id="switch-continues"),
        pytest.param([(False, 0x7FFE, 255, 0x7FFE, 255), (False, 0x7FFF, 255, 0x7FFF, 255),
                      (True, 40, 9, 0, 0), (False, 41, 10, 1, 1)], id="wrap-15bit-and-tl0"),
        pytest.param([(False, 20, 5, 20, 5), (False, 19, 5, 19, 5), (True, 300, 1, 21, 6)],
                     id="reordered-does-not-lower-last"),
        pytest.param([(True, 7, 1, 7, 1), (False, 8, 2, 8, 2)], id="switch-before-first-packet"),
    ],
)
def test_munger(steps: list[tuple[bool, int, int, int, int]]) -> None:
    m = Vp8Munger()
    for switch, pid, tl0, out_pid, out_tl0 in steps:
        if switch:
            m.switch()
        out = parse_descriptor(m.rewrite(desc(pid=pid, tl0=tl0, tid=0)))
        assert (out.picture_id, out.tl0picidx) == (out_pid, out_tl0)


def test_munger_7bit_picture_id_keeps_width() -> None:
    m = Vp8Munger()
    m.rewrite(desc(pid=127, m=False))
    m.switch()
    out = m.rewrite(desc(pid=60, m=False))
    assert len(out) == len(desc(pid=60, m=False))
    assert parse_descriptor(out).picture_id == 0


def test_munger_returns_input_when_unchanged() -> None:
    m = Vp8Munger()
    p = desc(pid=3, tl0=1)
    assert m.rewrite(p) is p
    plain = desc()
    m.switch()
    assert m.rewrite(plain) is plain  # no picture id: nothing to rewrite


@given(st.binary(max_size=12))
def test_fuzz(payload: bytes) -> None:
    try:
        d = parse_descriptor(payload)
    except Vp8Error:
        return
    assert d.size <= len(payload)
    m = Vp8Munger()
    m.rewrite(payload)
    m.switch()
    assert len(m.rewrite(payload)) == len(payload)


def key_header(width: int, height: int, *, tag: bytes = b"\x50\x2d\x01", start: bytes = b"\x9d\x01\x2a") -> bytes:
    """RFC 6386 section 9.1: frame tag, start code, 14-bit sizes with 2-bit scale, little-endian."""
    return tag + start + width.to_bytes(2, "little") + height.to_bytes(2, "little") + b"\x00" * 8


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (desc(header=key_header(320, 180)), (320, 180)),
        (desc(pid=0x1234, tl0=9, tid=0, header=key_header(640, 360)), (640, 360)),
        (desc(pid=7, m=False, header=key_header(1280, 720)), (1280, 720)),
        (desc(header=key_header(0x4000 | 1280, 0xC000 | 720)), (1280, 720)),  # upscaling bits ignored
        (desc(header=key_header(320, 180, tag=b"\x51\x2d\x01")), None),  # P bit: inter frame
        (desc(s=False, header=key_header(320, 180)), None),  # not the start of the frame
        (desc(part=1, header=key_header(320, 180)), None),  # not the first partition
        (desc(header=key_header(320, 180, start=b"\x9d\x01\x2b")), None),  # bad start code
        (desc(header=key_header(320, 180)[:9]), None),  # truncated before the height
        (desc(header=key_header(0, 180)), None),
        (b"\x90", None),  # truncated descriptor
    ],
)
def test_keyframe_size(payload: bytes, expected: tuple[int, int] | None) -> None:
    assert keyframe_size(payload) == expected


@given(st.binary(max_size=24))
def test_keyframe_size_fuzz(payload: bytes) -> None:
    size = keyframe_size(payload)
    assert size is None or (is_keyframe(payload) and 0 < size[0] < 0x4000 and 0 < size[1] < 0x4000)
