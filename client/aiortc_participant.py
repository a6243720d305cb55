"""A participant on aiortc: publishes a synthetic camera and microphone, subscribes by answering offers,
and counts what it really decodes per remote track (frames with timestamps, sizes, seconds of sound).

Frames are small (320x240 by default) to keep many participants on two cores cheap. The camera and
microphone encode live (and answer PLI), or, with `pre_encoded`, replay a loop aiortc's encoders made once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import math
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.mediastreams import (
    AUDIO_PTIME,
    VIDEO_TIME_BASE,
    MediaStreamError,
    MediaStreamTrack,
    VideoStreamTrack,
)
from av import AudioFrame, CodecContext, Packet, VideoFrame

from client import inline_decode
from client.protocol import SignallingClient


class SyntheticCamera(VideoStreamTrack):
    """A solid colour distinct per participant with a moving bar, so frames differ and compress to little."""

    CYCLE = 30  # distinct images, precomputed so that producing a frame costs next to nothing

    def __init__(self, seed: int, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width, self.height = width, height
        y, u, v = (seed * 67) % 160 + 40, (seed * 131) % 200 + 28, (seed * 29) % 200 + 28
        self._images = []
        for n in range(self.CYCLE):
            image = np.empty((height * 3 // 2, width), dtype=np.uint8)  # yuv420p planes stacked
            image[:height] = y
            image[height : height + height // 4] = u
            image[height + height // 4 :] = v
            x = (n * width // self.CYCLE) % (width - 16)
            image[:height, x : x + 16] = 235
            self._images.append(image)
        self._n = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame.from_ndarray(self._images[self._n % self.CYCLE], format="yuv420p")
        self._n += 1
        frame.pts, frame.time_base = pts, time_base
        return frame


class SyntheticMicrophone(MediaStreamTrack):
    """A quiet sine tone at a frequency distinct per participant, `ptime` frames (20 ms) at 48 kHz."""

    kind = "audio"
    RATE = 48000

    def __init__(self, seed: int, ptime: float = AUDIO_PTIME) -> None:
        super().__init__()
        self.freq = 200.0 + 50.0 * (seed % 16)  # a whole number of periods per second: one second loops
        self._samples = int(ptime * self.RATE)
        t = np.arange(self.RATE) / self.RATE
        self._second = (3000 * np.sin(2 * np.pi * self.freq * t)).astype(np.int16)
        self._ts = 0
        self._start: float | None = None

    async def _next_pts(self) -> int:
        """Wait until the next frame is due in real time; its timestamp in samples."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._ts += self._samples
            await asyncio.sleep(max(0.0, self._start + self._ts / self.RATE - time.time()))
        return self._ts

    def _frame(self, pts: int) -> AudioFrame:
        """The tone from sample `pts` on, one `ptime` long (wrapping around the second it loops)."""
        pcm = self._second.take(np.arange(pts, pts + self._samples), mode="wrap").reshape(1, -1)
        frame = AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = self.RATE, pts, fractions.Fraction(1, self.RATE)
        return frame

    async def recv(self) -> AudioFrame:
        return self._frame(await self._next_pts())


class _PreEncodedLoop:
    """A whole number of seconds of a synthetic track, encoded once by aiortc's own encoder, replayed in a
    loop as packets.

    aiortc's sender packetises an `av.Packet` as it is (`Encoder.pack`), so a publisher replaying these
    does no encoding, no resampling and no audio-level computation at run time, and is as cheap as a
    publisher can be while still being aiortc's RTP sender. Each loop starts with a keyframe, so a new
    subscriber decodes within a second without the publisher honouring PLI.
    """

    def __init__(self, payloads: list[bytes], time_base: fractions.Fraction) -> None:
        self.payloads, self.time_base = payloads, time_base
        self._n = 0

    def next(self, pts: int) -> Packet[Any]:
        packet = Packet(self.payloads[self._n % len(self.payloads)])
        self._n += 1
        packet.pts, packet.time_base = pts, self.time_base
        return packet


class PreEncodedCamera(SyntheticCamera):
    """`SyntheticCamera`'s images, VP8-encoded once (one second, keyframe first) and replayed."""

    def __init__(self, seed: int, width: int = 320, height: int = 240) -> None:
        super().__init__(seed, width, height)
        encoder, frames = Vp8Encoder(), []
        for n, image in enumerate(self._images):
            frame = VideoFrame.from_ndarray(image, format="yuv420p")
            frame.pts, frame.time_base = n * 3000, VIDEO_TIME_BASE
            payloads, _ = encoder.encode(frame, force_keyframe=n == 0)
            frames.append(b"".join(vp8_depayload(p) for p in payloads))
        self._replay = _PreEncodedLoop(frames, VIDEO_TIME_BASE)

    async def recv(self) -> Packet[Any]:  # type: ignore[override]
        pts, _ = await self.next_timestamp()
        return self._replay.next(pts)


class PreEncodedMicrophone(SyntheticMicrophone):
    """`SyntheticMicrophone`'s tone, Opus-encoded once (a whole number of seconds of `ptime` packets,
    32 kbit/s mono voip, as browsers send) and replayed. Opus allows 2.5 to 120 ms per packet (RFC 7587);
    60 ms sends a third of the packets of 20 ms for the same seconds of sound."""

    def __init__(self, seed: int, ptime: float = AUDIO_PTIME) -> None:
        super().__init__(seed, ptime)
        encoder = CodecContext.create("libopus", "w")
        encoder.bit_rate, encoder.format, encoder.layout = 32_000, "s16", "mono"
        encoder.sample_rate, encoder.time_base = self.RATE, fractions.Fraction(1, self.RATE)
        encoder.options = {"application": "voip", "frame_duration": f"{ptime * 1000:g}"}
        count = math.lcm(self.RATE, self._samples) // self._samples  # packets in a whole number of seconds
        packets: list[bytes] = []
        pts = 0
        while len(packets) < count:  # the encoder's lookahead delays its first packet
            packets.extend(bytes(p) for p in encoder.encode(self._frame(pts)))
            pts += self._samples
        del packets[count:]
        self._replay = _PreEncodedLoop(packets, fractions.Fraction(1, self.RATE))

    async def recv(self) -> Packet[Any]:  # type: ignore[override]
        return self._replay.next(await self._next_pts())


@dataclass
class RemoteTrackStats:
    """What one remote track delivered, decoded."""

    track_id: str
    participant_id: str
    kind: str
    frames: int = 0
    times: list[float] = field(default_factory=list)  # monotonic arrival time of each decoded frame
    durations: list[float] = field(default_factory=list)  # seconds of sound in each decoded frame (video: 0)
    sizes: set[tuple[int, int]] = field(default_factory=set)

    def fps(self, window: float, *, now: float | None = None) -> float:
        """Decoded frames per second over the last `window` seconds."""
        end = time.monotonic() if now is None else now
        return sum(1 for t in self.times if t >= end - window) / window

    def audio_ms_per_s(self, window: float, *, now: float | None = None) -> float:
        """Milliseconds of sound decoded per second over the last `window` seconds (1000: nothing lost),
        whatever the sender's packet duration."""
        end = time.monotonic() if now is None else now
        return 1000 * sum(d for t, d in zip(self.times, self.durations, strict=True) if t >= end - window) / window

    def last_frame_age(self) -> float:
        return time.monotonic() - self.times[-1] if self.times else float("inf")


def _configuration() -> RTCConfiguration:
    # max-bundle: under aiortc's default (balanced) policy, a second new video m-section in one offer gets
    # the first one's pre-bundle transport, which is then stopped, and that receiver never starts.
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def _set_rcvbuf(pc: RTCPeerConnection, size: int) -> None:
    """SO_RCVBUF on the peer connection's ICE sockets (aiortc keeps them in aioice's private protocols)."""
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport._connection
        for protocol in connection._protocols:
            sock = protocol.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


class AiortcParticipant:
    def __init__(self, url: str, token: str, *, seed: int = 0, publish: bool = True,
                 width: int = 320, height: int = 240, video_size: tuple[int, int] | None = None,
                 rcvbuf: int | None = None, pre_encoded: bool = False, audio_ptime: float = AUDIO_PTIME) -> None:
        self.signalling = SignallingClient(url)
        self.token = token
        self.seed = seed
        self.publish_media = publish
        self.size = (width, height)
        self.pre_encoded = pre_encoded  # replay encoded-once media instead of encoding live (no PLI response)
        self.audio_ptime = audio_ptime  # seconds of sound per Opus packet, when pre-encoded
        # Adaptive stream (docs/protocol.md 4.6a): the tile size each received video is shown at, so that
        # the server forwards a small simulcast layer; None: no preference (the top layer).
        self.video_size = video_size
        self._sized: set[str] = set()
        # A larger socket receive buffer: a process starved of CPU for a few hundred ms (several peers on
        # two cores) reads late instead of having the kernel drop datagrams aiortc then waits seconds for.
        self.rcvbuf = rcvbuf
        self.participant_id = ""
        self.joined: dict[str, Any] = {}
        self.published: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []  # every event other than offers, in order
        self.stats: dict[str, RemoteTrackStats] = {}  # by server track id
        self.active_tracks: dict[str, str] = {}  # track id -> participant id, as the latest offer says
        self._mid_to_track: dict[str, tuple[str, str]] = {}
        self._pub: RTCPeerConnection | None = None
        self._sub = RTCPeerConnection(_configuration())
        self._sub.on("track", self._on_track)
        self._tasks: list[asyncio.Task[None]] = []
        self._event_task: asyncio.Task[None] | None = None

    async def join(self) -> dict[str, Any]:
        await self.signalling.connect()
        self.joined = await self.signalling.join(self.token)
        self.participant_id = self.joined["participant"]["id"]
        self._event_task = asyncio.create_task(self._event_loop())
        if self.publish_media and self.joined["participant"]["can_publish"]:
            await self.publish()
        return self.joined

    async def publish(self) -> None:
        pc = self._pub = RTCPeerConnection(_configuration())
        if self.pre_encoded:
            microphone: MediaStreamTrack = PreEncodedMicrophone(self.seed, self.audio_ptime)
            camera: MediaStreamTrack = PreEncodedCamera(self.seed, *self.size)
        else:
            microphone, camera = SyntheticMicrophone(self.seed), SyntheticCamera(self.seed, *self.size)
        pc.addTransceiver(microphone, direction="sendonly")
        pc.addTransceiver(camera, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        reply = await self.signalling.publish(pc.localDescription.sdp)
        self.published = reply["tracks"]
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

    async def _event_loop(self) -> None:
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            while True:
                event = await self.signalling.next_event(timeout=1e9)
                if event.get("type") == "offer":
                    await self._answer(event)
                else:
                    self.events.append(event)

    async def _answer(self, offer: dict[str, Any]) -> None:
        for t in offer["tracks"]:
            if t["track_id"] is not None:
                self._mid_to_track[t["mid"]] = (t["track_id"], t["participant_id"])
        self.active_tracks = {t["track_id"]: t["participant_id"] for t in offer["tracks"] if t["track_id"]}
        await self._sub.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await self._sub.setLocalDescription(await self._sub.createAnswer())
        if self.rcvbuf is not None:
            _set_rcvbuf(self._sub, self.rcvbuf)
        await self.signalling.answer(offer["offer_id"], self._sub.localDescription.sdp)
        if self.video_size is not None:
            for t in offer["tracks"]:
                if t["track_id"] is not None and t["kind"] == "video" and t["track_id"] not in self._sized:
                    self._sized.add(t["track_id"])
                    await self.signalling.request({"type": "video_preference", "track_id": t["track_id"],
                                                   "max_width": self.video_size[0],
                                                   "max_height": self.video_size[1]})

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next((t.mid for t in self._sub.getTransceivers() if t.receiver.track is track), None)
        self._tasks.append(asyncio.create_task(self._consume(track, mid)))

    async def _consume(self, track: MediaStreamTrack, mid: str | None) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                entry = self._mid_to_track.get(mid or "")
                if entry is None:
                    continue
                stats = self.stats.get(entry[0])
                if stats is None:
                    stats = self.stats[entry[0]] = RemoteTrackStats(entry[0], entry[1], track.kind)
                stats.frames += 1
                stats.times.append(time.monotonic())
                if isinstance(frame, AudioFrame):
                    stats.durations.append(frame.samples / frame.sample_rate)
                else:
                    stats.durations.append(0.0)
                    if isinstance(frame, VideoFrame):
                        stats.sizes.add((frame.width, frame.height))

    def summary(self, window: float = 10.0) -> dict[str, dict[str, Any]]:
        """Per remote track: participant, kind, frames, fps over `window`, sizes, active per the last offer."""
        return {
            tid: {"participant_id": s.participant_id, "kind": s.kind, "frames": s.frames,
                  "fps": round(s.fps(window), 1), "sizes": sorted(s.sizes), "active": tid in self.active_tracks,
                  "audio_ms_per_s": round(s.audio_ms_per_s(window)) if s.kind == "audio" else None}
            for tid, s in self.stats.items()
        }

    def tracks_of(self, participant_id: str, kind: str | None = None) -> list[RemoteTrackStats]:
        return [s for s in self.stats.values()
                if s.participant_id == participant_id and (kind is None or s.kind == kind)]

    async def leave(self) -> None:
        await self.signalling.leave()
        await self.close()

    async def close(self) -> None:
        for task in [*self._tasks, *([self._event_task] if self._event_task else [])]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.signalling.close()
        if self._pub is not None:
            await self._pub.close()
        await self._sub.close()


async def _run_process(args: argparse.Namespace) -> None:
    """One participant per process: join, wait until every expected peer's audio and video decode, report
    the per-track summary over `--window` seconds as one JSON line, then stay until stdin closes.

    Decoders run on the event loop (`client.inline_decode`): with several participant processes per core,
    aiortc's thread per received track costs more than the decoding."""
    inline_decode.install()
    w, _, h = args.video_size.partition("x")
    p = AiortcParticipant(args.url, args.token, seed=args.seed, width=args.width, height=args.height,
                          video_size=(int(w), int(h)) if args.video_size else None, rcvbuf=args.rcvbuf,
                          pre_encoded=args.pre_encoded, audio_ptime=args.audio_ptime / 1000)
    await p.join()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.wait
    while loop.time() < deadline:
        senders = {(s.participant_id, s.kind) for s in p.stats.values() if s.frames}
        if len(senders) >= 2 * args.expect:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(args.window + 0.2)
    pauses = [e for e in p.events if e.get("type") in ("track_paused", "track_resumed")]
    print(json.dumps({"participant_id": p.participant_id, "tracks": p.summary(args.window), "pauses": pauses}),
          flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    await p.leave()


def main() -> None:
    parser = argparse.ArgumentParser(description="one aiortc participant in its own process")
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--expect", type=int, default=1, help="remote participants to wait for")
    parser.add_argument("--wait", type=float, default=40.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--video-size", default="", help="WxH tile each received video is shown at")
    parser.add_argument("--pre-encoded", action="store_true",
                        help="replay media encoded once at start instead of encoding live (cheap; ignores PLI)")
    parser.add_argument("--audio-ptime", type=float, default=AUDIO_PTIME * 1000,
                        help="milliseconds of sound per Opus packet, with --pre-encoded (20, 40, 60...)")
    parser.add_argument("--rcvbuf", type=int, default=None, help="SO_RCVBUF of its media sockets (bytes)")
    asyncio.run(_run_process(parser.parse_args()))


if __name__ == "__main__":
    main()
