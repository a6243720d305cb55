"""aiortc participants for mixed browser + aiortc sessions.

`AiortcPeer` runs in the test process (publishes synthetic 320x240 video and silence, answers every
subscribe offer, counts decoded frames per sender and kind); fine for one peer next to one browser.
`ParticipantProcess` runs `client.aiortc_participant` in a process of its own, as the integration family
test does: next to several Chromiums and Playwright, peers sharing the test process's event loop and GIL
read their sockets seconds late and the kernel drops their datagrams.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from av import VideoFrame

from tests.browser.server_process import ROOT


class SmallVideo(VideoStreamTrack):
    """A moving gradient at 320x240, cheap to encode."""

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=320, height=240)
        for plane in frame.planes:
            plane.update(bytes([(pts // 3000) % 256]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base or fractions.Fraction(1, 90000)
        return frame


@dataclass
class AiortcPeer:
    ws_url: str
    token: str
    participant_id: str = ""
    frames: dict[tuple[str, str], int] = field(default_factory=dict)  # (sender id, kind) -> decoded frames
    # Adaptive stream as an SDK client shows video: the size (pixels) of the tile each video is drawn in.
    # None: no preference, the server forwards the highest layer (bandwidth allowing).
    video_size: tuple[int, int] | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.ws_url)
        # max-bundle: under aiortc's default (balanced), when one offer adds several video sections the
        # second one is bound to the first one's own transport, which bundling then stops; its packets
        # reach the first video receiver by payload type and both streams fail to decode.
        config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        self._pub = RTCPeerConnection(config)
        self._sub = RTCPeerConnection(config)
        self._mids: dict[str, tuple[str, str]] = {}
        self._sized: set[str] = set()
        self._sub.on("track", self._on_track)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 1
        self._tasks.append(asyncio.create_task(self._read()))
        joined = await self._request({"type": "join", "token": self.token})
        self.participant_id = joined["participant"]["id"]
        self._pub.addTrack(AudioStreamTrack())
        self._pub.addTrack(SmallVideo())
        await self._pub.setLocalDescription(await self._pub.createOffer())
        answer = await self._request({"type": "publish", "sdp": self._pub.localDescription.sdp})
        await self._pub.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def _request(self, msg: dict[str, Any]) -> dict[str, Any]:
        msg["id"] = self._next
        self._next += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[msg["id"]] = fut
        await self._ws.send_str(json.dumps(msg))
        reply = await asyncio.wait_for(fut, 15)
        if reply["type"] == "error":
            raise AssertionError(f"{msg['type']} refused: {reply}")
        return reply

    async def _read(self) -> None:
        async for frame in self._ws:
            msg = json.loads(frame.data)
            if msg.get("id") in self._replies:
                self._replies.pop(msg["id"]).set_result(msg)
            elif msg["type"] == "offer":
                self._tasks.append(asyncio.create_task(self._answer(msg)))

    async def _answer(self, msg: dict[str, Any]) -> None:
        for t in msg["tracks"]:
            if t["track_id"]:
                self._mids[t["mid"]] = (t["participant_id"], t["kind"])
        await self._sub.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
        await self._sub.setLocalDescription(await self._sub.createAnswer())
        await self._request(
            {"type": "answer", "offer_id": msg["offer_id"], "sdp": self._sub.localDescription.sdp}
        )
        if self.video_size is not None:
            for t in msg["tracks"]:
                if t["track_id"] and t["kind"] == "video" and t["track_id"] not in self._sized:
                    self._sized.add(t["track_id"])
                    await self._request({"type": "video_preference", "track_id": t["track_id"],
                                         "max_width": self.video_size[0], "max_height": self.video_size[1]})

    def _key(self, track: Any) -> tuple[str, str]:
        mid = next((t.mid for t in self._sub.getTransceivers() if t.receiver.track is track), None)
        return self._mids.get(mid or "", (f"mid-{mid}", track.kind))

    def _on_track(self, track: Any) -> None:
        async def drain() -> None:
            # The sender is looked up per frame until known: aiortc may announce a track before its
            # transceiver's mid is set, and such frames must still count for the right participant.
            key: tuple[str, str] | None = None
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()
                    if key is None or key[0].startswith("mid-"):
                        key = self._key(track)
                    self.frames[key] = self.frames.get(key, 0) + 1

        self._tasks.append(asyncio.create_task(drain()))

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await self._pub.close()
        await self._sub.close()
        await self._ws.close()
        await self._http.close()


class ParticipantProcess:
    """One `python -m client.aiortc_participant`: joins, waits until `expect` others' audio and video decode,
    then reports per remote track what it decoded over the last `window` seconds (one JSON line)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, ws_url: str, token: str, *, seed: int, expect: int, window: float,
                    video_size: tuple[int, int] | None = None, camera: tuple[int, int] = (320, 240),
                    nice: int = 0, rcvbuf: int | None = None) -> ParticipantProcess:
        args = ["--url", ws_url, "--token", token, "--seed", str(seed), "--expect", str(expect),
                "--window", str(window), "--width", str(camera[0]), "--height", str(camera[1])]
        if rcvbuf is not None:
            args += ["--rcvbuf", str(rcvbuf)]
        if video_size is not None:
            args += ["--video-size", f"{video_size[0]}x{video_size[1]}"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "client.aiortc_participant", *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )
        if nice:
            os.setpriority(os.PRIO_PROCESS, proc.pid, nice)  # tests run as root
        return cls(proc)

    async def report(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert line, f"the aiortc participant process died (exit {await self.proc.wait()})"
        report: dict[str, Any] = json.loads(line)
        return report

    async def close(self) -> None:
        """Closing stdin makes it leave the room and exit."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
