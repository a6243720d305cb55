"""The encoded-once media of `client.aiortc_participant` decodes, with aiortc's own decoders, to what the
live synthetic tracks would give: the right picture size, keyframe first, and real seconds of sound."""

from __future__ import annotations

import pytest
from aiortc.codecs.opus import OpusDecoder
from aiortc.codecs.vpx import Vp8Decoder
from aiortc.jitterbuffer import JitterFrame

from client.aiortc_participant import PreEncodedCamera, PreEncodedMicrophone


def test_camera_loop_decodes_from_its_first_frame() -> None:
    camera = PreEncodedCamera(seed=2, width=160, height=120)
    payloads = camera._replay.payloads
    assert len(payloads) == camera.CYCLE
    decoder = Vp8Decoder()
    sizes = [(f.width, f.height) for i, p in enumerate(payloads * 2) for f in decoder.decode(JitterFrame(p, i * 3000))]
    assert sizes == [(160, 120)] * (2 * camera.CYCLE)  # the loop restarts on a keyframe: no frame lost


@pytest.mark.parametrize("ptime", [0.02, 0.06])
def test_microphone_loop_is_whole_seconds_of_sound(ptime: float) -> None:
    microphone = PreEncodedMicrophone(seed=1, ptime=ptime)
    payloads = microphone._replay.payloads
    decoder = OpusDecoder()
    frames = [f for i, p in enumerate(payloads) for f in decoder.decode(JitterFrame(p, i))]
    seconds = sum(f.samples for f in frames) / 48_000
    assert seconds == pytest.approx(round(seconds)) and seconds >= 1
    assert {f.samples for f in frames} == {round(ptime * 48_000)}
