"""Pre-encoded media for cheap synthetic participants: VP8 and Opus RTP payloads, encoded once and cached.

Load and benchmark clients replay these payloads, so no client encodes at run time. The clip is made
with aiortc's own VP8 and Opus encoders (so the payloads are exactly what an aiortc peer would send),
then kept in a cache file keyed by its parameters.
"""

from __future__ import annotations

import fractions
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000
AUDIO_PTIME = 0.02


@dataclass(frozen=True)
class VideoFrame:
    payloads: tuple[bytes, ...]  # VP8 RTP payloads (descriptor included), in order
    keyframe: bool


@dataclass(frozen=True)
class Clip:
    fps: int
    width: int
    height: int
    video: tuple[VideoFrame, ...]
    audio: tuple[bytes, ...]  # one Opus payload per 20 ms

    @property
    def keyframe_indices(self) -> tuple[int, ...]:
        return tuple(i for i, f in enumerate(self.video) if f.keyframe)

    @property
    def video_bitrate(self) -> float:
        total = sum(len(p) for f in self.video for p in f.payloads)
        return total * 8 * self.fps / max(1, len(self.video))


def _cache_dir() -> Path:
    base = os.environ.get("CONFIDANT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "confidant")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_clip(*, seconds: int = 10, fps: int = 30, width: int = 640, height: int = 480,
              video_bitrate: int = 500_000, audio_bitrate: int = 32_000, keyframe_every_s: float = 2.0) -> Clip:
    """The clip for these parameters, encoding it once if it is not cached yet."""
    key = f"clip-v2-{seconds}s-{fps}fps-{width}x{height}-{video_bitrate}-{audio_bitrate}-{keyframe_every_s}.pickle"
    path = _cache_dir() / key
    if path.exists():
        with path.open("rb") as f:
            clip = pickle.load(f)
        if isinstance(clip, Clip):
            return clip
    clip = _encode(seconds=seconds, fps=fps, width=width, height=height, video_bitrate=video_bitrate,
                   audio_bitrate=audio_bitrate, keyframe_every_s=keyframe_every_s)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(clip, f)
    tmp.replace(path)
    return clip


def _encode(*, seconds: int, fps: int, width: int, height: int, video_bitrate: int, audio_bitrate: int,
            keyframe_every_s: float) -> Clip:
    import av
    import numpy as np
    from aiortc.codecs.opus import OpusEncoder
    from aiortc.codecs.vpx import Vp8Encoder

    venc = Vp8Encoder()
    venc.target_bitrate = video_bitrate
    frames: list[VideoFrame] = []
    n_frames = seconds * fps
    keyframe_every = max(1, round(keyframe_every_s * fps))
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(n_frames):
        # A moving gradient: content that changes every frame, like a camera image.
        img = np.zeros((height, width, 3), dtype=np.uint8)
        img[..., 0] = (xx + i * 4) % 256
        img[..., 1] = (yy + i * 2) % 256
        img[..., 2] = ((xx + yy) // 2 + i * 3) % 256
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i * VIDEO_CLOCK // fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        keyframe = i % keyframe_every == 0
        payloads, _ = venc.encode(frame, force_keyframe=keyframe)
        frames.append(VideoFrame(tuple(payloads), keyframe))

    aenc = OpusEncoder()
    aenc.codec.bit_rate = audio_bitrate
    samples = int(AUDIO_CLOCK * AUDIO_PTIME)
    audio: list[bytes] = []
    for i in range(int(seconds / AUDIO_PTIME)):
        t = (np.arange(samples) + i * samples) / AUDIO_CLOCK
        tone = (8000 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
        stereo = np.repeat(tone, 2).reshape(1, -1)
        aframe = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        aframe.sample_rate = AUDIO_CLOCK
        aframe.pts = i * samples
        aframe.time_base = fractions.Fraction(1, AUDIO_CLOCK)
        payloads, _ = aenc.encode(aframe)
        audio.extend(payloads)
    return Clip(fps=fps, width=width, height=height, video=tuple(frames), audio=tuple(audio))
