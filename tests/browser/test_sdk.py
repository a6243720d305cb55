"""The SDK and demo page against a protocol stub with aiortc as the media peer (no SFU involved)."""

from __future__ import annotations

import pytest

from tests.browser.harness import BrowserLab
from tests.browser.session import Participant, measure
from tests.browser.stub_signalling import REMOTE_ID, stub_server

pytestmark = pytest.mark.browser


async def test_sdk_publishes_subscribes_reports_stats_and_leaves(lab: BrowserLab) -> None:
    async with stub_server() as (base, state):
        p = Participant(await lab.launch(base))
        assert await p.join(base, "stub-client-1", name="Stub") == "stub-client-1"
        await p.wait_remote(REMOTE_ID, "video")
        await p.wait_remote(REMOTE_ID, "audio")
        deltas = await measure(p, [REMOTE_ID], 3.0)
        video, audio = deltas[(REMOTE_ID, "video")], deltas[(REMOTE_ID, "audio")]
        assert video["framesDecoded"] > 20 and video["bytesReceived"] > 0 and video["last_frameWidth"] == 640
        assert audio["totalSamplesReceived"] > 0
        stats = await p.stats()
        local = {(s["kind"], s["rid"]) for s in stats["local"]}
        assert ("audio", None) in local and any(k == "video" for k, _ in local), local
        # The publish offer carried simulcast q/h/f and VP8 first; aiortc accepted audio and video.
        assert sorted(state.publish_kinds) == ["audio", "video"]
        offer_sdp = await p.page.evaluate("() => window.confidantRoom.publishPc.localDescription.sdp")
        assert "a=simulcast:send q;h;f" in offer_sdp
        video_m = offer_sdp[offer_sdp.index("m=video") :].split("\r\n")[0]
        first_pt = video_m.split()[3]
        assert f"a=rtpmap:{first_pt} VP8/90000" in offer_sdp
        # The demo page: our own tile plus the remote one, which shows video (no audio-only badge).
        assert await p.page.locator("section.tile").count() == 2
        assert await p.page.locator("section.tile.audio-only").count() == 0
        await p.screenshot("sdk-stub.png")
        await p.page.evaluate("() => window.confidantRoom.pinLayer('tr_v', 'h')")
        assert {
            "type": "pin_layer",
            "id": state.received[-1]["id"],
            "track_id": "tr_v",
            "layer": 1,
        } in state.received
        closed = await p.page.evaluate(
            """async () => { const r = window.confidantRoom; await r.leave();
                 return [r.publishPc.connectionState, r.subscribePc.connectionState,
                         r.localStream.getTracks().map(t => t.readyState)]; }"""
        )
        assert closed == ["closed", "closed", ["ended", "ended"]]
        assert [m["type"] for m in state.received][-1] == "leave"
