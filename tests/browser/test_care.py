"""A care session driven through the demo page in real Chromium: the therapist admits a waiting client and
starts a private check-in; a third participant (replayed media, counted per SSRC) is held to the packet."""

from __future__ import annotations

import asyncio

import pytest

from client.media import load_clip
from tests.browser.harness import BrowserLab
from tests.browser.server_process import ServerProcess
from tests.browser.session import Participant
from tests.care.participants import CareParticipant, event, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

IN_FLIGHT = 0.1


async def test_admit_and_check_in_through_the_demo_page(server: ServerProcess, lab: BrowserLab) -> None:
    room = await server.create_room("couples")  # waiting room on, as by default
    therapist = Participant(await lab.launch(server.base_url))
    await therapist.join(server.base_url, await server.token(room, "p-therapist", "therapist", "Dr. Lee"),
                         name="Dr. Lee")
    client = Participant(await lab.launch(server.base_url))
    token = await server.token(room, "p-client", "client", "Alex")
    await client.page.goto(f"{server.base_url}/static/index.html?autojoin=1&token={token}&name=Alex")
    await client.browser.wait_for("() => document.body.dataset.state === 'waiting'", timeout=20)

    # The therapist sees Alex waiting, by name, and admits them with the button.
    admit = 'li[data-waiting="p-client"] button.admit'
    await therapist.browser.wait_for(f"() => !!document.querySelector('{admit}')", timeout=10)
    assert await therapist.page.text_content('li[data-waiting="p-client"] .name') == "Alex"
    await therapist.page.click(admit)
    await client.browser.wait_for("() => document.body.dataset.state === 'joined'", timeout=20)
    client.participant_id = "p-client"
    for me, other in ((therapist, "p-client"), (client, "p-therapist")):
        await me.wait_remote(other, "video")
        await me.wait_remote(other, "audio")

    # A partner joins from a replay client; the therapist admits them through the page too.
    ws_url = server.base_url.replace("http", "ws", 1) + "/ws"
    partner = CareParticipant(ws_url, await server.token(room, "p-partner", "client", "Sam"),
                              load_clip(seconds=4, width=320, height=240, video_bitrate=300_000))
    try:
        await partner.start()
        await therapist.browser.wait_for("() => !!document.querySelector('li[data-waiting=\"p-partner\"]')")
        await therapist.page.click('li[data-waiting="p-partner"] button.admit')
        await event(partner, "admitted")
        await partner.publish_media()
        await wait_for(lambda: partner.packets_from("p-therapist") > 50 and partner.packets_from("p-client") > 50,
                       "the partner receiving both browsers", timeout=30)
        # Quality indicators: the therapist's tile for Alex shows a grade.
        await therapist.browser.wait_for(
            """() => document.querySelector('section[data-participant="p-client"] .quality').dataset.quality""",
            timeout=15)

        # Private check-in with Alex, started from Alex's tile.
        await therapist.page.click('section[data-participant="p-client"] button.ctl-checkin')
        await event(partner, "on_hold", active=True)
        await client.browser.wait_for("() => !document.getElementById('checkin').hidden", timeout=10)
        await asyncio.sleep(IN_FLIGHT)
        held = (partner.packets_from("p-therapist"), partner.packets_from("p-client"))
        before = await client.remote("p-therapist", "video")
        await asyncio.sleep(3.0)
        assert (partner.packets_from("p-therapist"), partner.packets_from("p-client")) == held
        after = await client.remote("p-therapist", "video")
        assert before is not None and after is not None
        assert after["framesDecoded"] > before["framesDecoded"] + 30  # the pair still see each other
        await therapist.screenshot("care-check-in-therapist.png")
        await client.screenshot("care-check-in-client.png")

        await therapist.page.click("#end-checkin")
        await event(partner, "on_hold", active=False)
        await wait_for(lambda: partner.packets_from("p-therapist") > held[0] + 30, "the partner back", timeout=15)
        await client.browser.wait_for("() => document.getElementById('checkin').hidden", timeout=10)
    finally:
        await partner.close()
