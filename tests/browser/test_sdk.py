"""The browser SDK and demo page against the real server, with an aiortc participant on the other side."""

from __future__ import annotations

import asyncio

import pytest

from tests.browser.aiortc_peer import AiortcPeer
from tests.browser.harness import BrowserLab
from tests.browser.server_process import ServerProcess
from tests.browser.session import Participant, measure

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


async def test_sdk_publishes_subscribes_reports_stats_pins_and_leaves(server: ServerProcess, lab: BrowserLab) -> None:
    room = await server.create_room("individual", waiting_room=False)
    peer = AiortcPeer(server.base_url.replace("http", "ws") + "/ws", await server.token(room, "p-bot", "therapist"))
    await peer.start()
    try:
        p = Participant(await lab.launch(server.base_url))
        me = await p.join(server.base_url, await server.token(room, "p-sdk", "client", "Sam"), name="Sam")
        assert me == "p-sdk"
        await p.wait_remote(peer.participant_id, "video")
        await p.wait_remote(peer.participant_id, "audio")
        deltas = await measure(p, [peer.participant_id], 3.0)
        video, audio = deltas[(peer.participant_id, "video")], deltas[(peer.participant_id, "audio")]
        assert video["framesDecoded"] > 20 and video["bytesReceived"] > 0 and video["last_frameWidth"] == 320
        assert audio["totalSamplesReceived"] > 0
        # The SDK published simulcast q/h/f with VP8 first, and the other side decodes it.
        offer_sdp = await p.page.evaluate("() => window.confidantRoom.publishPc.localDescription.sdp")
        assert "a=simulcast:send q;h;f" in offer_sdp
        video_m = offer_sdp[offer_sdp.index("m=video") :].split("\r\n")[0]
        assert f"a=rtpmap:{video_m.split()[3]} VP8/90000" in offer_sdp
        for _ in range(50):
            if peer.frames.get((me, "video"), 0) > 10:
                break
            await asyncio.sleep(0.2)
        assert peer.frames.get((me, "video"), 0) > 10, peer.frames
        stats = await p.stats()
        assert {s["kind"] for s in stats["local"]} == {"audio", "video"}
        # The demo page: our own tile plus the remote one, with video (no audio-only badge).
        assert await p.page.locator("section.tile").count() == 2
        assert await p.page.locator("section.tile.audio-only").count() == 0
        await p.screenshot("sdk-real-server.png")
        # Pinning goes through the protocol and the server accepts it (the aiortc track has one layer).
        await p.page.evaluate(
            "(pid) => { const t = [...window.confidantRoom.remoteTracks.values()].find("
            "x => x.participantId === pid && x.kind === 'video'); return window.confidantRoom.pinLayer(t.trackId, 0); }",
            peer.participant_id,
        )
        closed = await p.page.evaluate(
            """async () => { const r = window.confidantRoom; await r.leave();
                 return [r.publishPc.connectionState, r.subscribePc.connectionState,
                         r.localStream.getTracks().map(t => t.readyState)]; }"""
        )
        assert closed == ["closed", "closed", ["ended", "ended"]]
        for _ in range(50):
            people = (await server.api("GET", f"/v1/rooms/{room}"))["participants"]
            if [x["id"] for x in people] == [peer.participant_id]:
                break
            await asyncio.sleep(0.1)
        assert [x["id"] for x in people] == [peer.participant_id]
    finally:
        await peer.close()
