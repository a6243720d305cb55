"""A protocol-speaking stand-in for the signalling server, with aiortc as the media peer, for SDK tests.

It serves the real static files and answers the docs/protocol.md messages the SDK sends (join, publish,
answer, pin_layer, leave, ping) for one participant: aiortc answers the publish offer and sinks the media,
and offers one synthetic audio + video "participant" on the subscribe connection. It checks the SDK's side
of the protocol and WebRTC plumbing with real peers; forwarding is tested against the real server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from signalling.devtools import STATIC_DIR
from tests.netns import HOST_ADDR

REMOTE_ID = "aiortc-peer"


@dataclass
class StubState:
    received: list[dict[str, Any]] = field(default_factory=list)
    publish_kinds: list[str] = field(default_factory=list)
    pcs: list[RTCPeerConnection] = field(default_factory=list)
    sinks: list[MediaBlackhole] = field(default_factory=list)


async def _ws(request: web.Request) -> web.WebSocketResponse:
    state = request.app[STATE]
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    sub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    state.pcs += [sub, pub]
    sink = MediaBlackhole()
    state.sinks.append(sink)

    @pub.on("track")
    def on_track(track: Any) -> None:
        state.publish_kinds.append(track.kind)
        sink.addTrack(track)

    async def reply(msg: dict[str, Any], body: dict[str, Any]) -> None:
        await ws.send_str(json.dumps({**body, "id": msg.get("id")}))

    async for frame in ws:
        if frame.type != WSMsgType.TEXT:
            break
        msg = json.loads(frame.data)
        state.received.append({k: v for k, v in msg.items() if k != "sdp"})
        kind = msg["type"]
        if kind == "join":
            me = {
                "id": msg["token"],
                "role": "client",
                "name": "Stub client",
                "can_publish": True,
                "can_subscribe": True,
            }
            other = {
                "id": REMOTE_ID,
                "role": "therapist",
                "name": "aiortc peer",
                "tracks": [
                    {"id": "tr_a", "kind": "audio"},
                    {"id": "tr_v", "kind": "video", "simulcast": False},
                ],
            }
            await reply(
                msg,
                {
                    "type": "joined",
                    "participant": me,
                    "room": {"id": "stub", "kind": "individual", "participants": [other]},
                },
            )
            sub.addTrack(AudioStreamTrack())
            sub.addTrack(VideoStreamTrack())
            await sub.setLocalDescription(await sub.createOffer())
            tracks = [
                {
                    "mid": t.mid,
                    "track_id": "tr_a" if t.kind == "audio" else "tr_v",
                    "participant_id": REMOTE_ID,
                    "kind": t.kind,
                }
                for t in sub.getTransceivers()
            ]
            await ws.send_str(
                json.dumps(
                    {"type": "offer", "offer_id": 1, "sdp": sub.localDescription.sdp, "tracks": tracks}
                )
            )
        elif kind == "answer":
            await sub.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
            await reply(msg, {"type": "ok"})
        elif kind == "publish":
            await pub.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
            await pub.setLocalDescription(await pub.createAnswer())
            await sink.start()
            tracks = [{"id": f"tr_pub{t.mid}", "mid": t.mid, "kind": t.kind} for t in pub.getTransceivers()]
            # aiortc omits the final CRLF check Chrome does; strip it to prove the SDK restores it.
            await reply(
                msg, {"type": "answer", "sdp": pub.localDescription.sdp.rstrip("\r\n"), "tracks": tracks}
            )
        elif kind in ("pin_layer", "leave"):
            await reply(msg, {"type": "ok"})
            if kind == "leave":
                await ws.close(code=1000)
        elif kind == "ping":
            await reply(msg, {"type": "pong"})
    return ws


STATE = web.AppKey("state", StubState)


@asynccontextmanager
async def stub_server() -> AsyncIterator[tuple[str, StubState]]:
    state = StubState()
    app = web.Application()
    app[STATE] = state

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    app.router.add_get("/", index)
    app.router.add_get("/ws", _ws)
    app.router.add_static("/static", STATIC_DIR)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST_ADDR, 0)
    await site.start()
    try:
        yield f"http://{HOST_ADDR}:{runner.addresses[0][1]}", state
    finally:
        for sink in state.sinks:
            await sink.stop()
        for pc in state.pcs:
            await pc.close()
        await runner.cleanup()
