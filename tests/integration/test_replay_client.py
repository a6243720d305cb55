"""The cheap replay participant against the real server: media both ways, and RTCP the SFU can use."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from client.media import load_clip
from client.replay import ReplaySession
from tests.integration.server import RunningServer
from tests.netns import PEER_ADDR

pytestmark = pytest.mark.integration


def histogram_count(text: str, name: str) -> float:
    match = re.search(rf"^{name}_count\s+([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_replay_subscriber_receives_and_reports_loss_jitter_and_rtt(confidant: RunningServer) -> None:
    room = await confidant.create_room("individual", waiting_room=False)
    clip = load_clip(seconds=4)
    publisher = ReplaySession(confidant.ws_url, confidant.token(room, "rp-pub", "therapist"), clip, host=PEER_ADDR)
    subscriber = ReplaySession(confidant.ws_url, confidant.token(room, "rp-sub", "client"), clip, host=PEER_ADDR,
                               publish=False)
    try:
        await publisher.start()
        await subscriber.start()
        await asyncio.wait_for(subscriber.subscribed.wait(), 10)
        await asyncio.sleep(7)  # the server samples every subscriber link every 5 s
        packets = {"audio": 0, "video": 0}
        for counter in subscriber.media.received.values():  # video includes the RTX stream (probes)
            packets[counter.kind] += counter.packets
        assert packets["audio"] > 250 and packets["video"] > 300
        assert subscriber.media.totals()["lost"] == 0
        status, _ = await confidant.rest("GET", "/healthz")
        assert status == 200
        async with aiohttp.ClientSession() as http, http.get(confidant.base + "/metrics") as resp:
            text = await resp.text()
        # Our receiver reports reached the SFU: its link-quality histograms have samples.
        assert histogram_count(text, "confidant_subscriber_rtt_seconds") >= 1
        assert histogram_count(text, "confidant_subscriber_jitter_seconds") >= 1
    finally:
        await subscriber.close()
        await publisher.close()
