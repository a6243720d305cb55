"""End-to-end sessions in real headless Chromium (each in its own namespace) through the real server."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.browser.aiortc_peer import AiortcPeer
from tests.browser.harness import BrowserLab, BrowserNet
from tests.browser.server_process import ServerProcess
from tests.browser.session import FRAME_MONITOR_JS, Participant, assert_media_flows, measure

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

MEASURE_S = 10.0


async def join_all(
    server: ServerProcess,
    lab: BrowserLab,
    room: str,
    roles: list[tuple[str, str]],
    nets: dict[int, BrowserNet] | None = None,
) -> list[Participant]:
    """One browser per (role, name) joins `room`, in a fresh veth namespace unless `nets` gives one."""
    people = []
    for i, (role, name) in enumerate(roles):
        token = await server.token(room, f"p-{role}-{i}", role, name)
        p = Participant(await lab.launch(server.base_url, net=(nets or {}).get(i)))
        await p.join(server.base_url, token, name=name)
        people.append(p)
    return people


async def test_individual_session_two_browsers(server: ServerProcess, lab: BrowserLab) -> None:
    therapist, client = await join_all(
        server, lab, await server.create_room("individual", waiting_room=False),
        [("therapist", "Dr. Lee"), ("client", "Alex")],
    )
    for me, other in ((therapist, client), (client, therapist)):
        await me.wait_remote(other.participant_id, "video")
        await me.wait_remote(other.participant_id, "audio")
    deltas = await asyncio.gather(
        *(measure(p, [o.participant_id], MEASURE_S) for p, o in ((therapist, client), (client, therapist)))
    )
    assert_media_flows(deltas[0], client.participant_id, MEASURE_S)
    assert_media_flows(deltas[1], therapist.participant_id, MEASURE_S)
    # The demo page shows both participants, the remote one with live video (no audio-only badge).
    for p, name in ((therapist, "therapist"), (client, "client")):
        assert await p.page.locator("section.tile").count() == 2
        assert await p.page.locator("section.tile.audio-only").count() == 0
        await p.screenshot(f"individual-{name}.png")


async def test_simulcast_layer_pinning(server: ServerProcess, lab: BrowserLab) -> None:
    publisher, subscriber = await join_all(
        server, lab, await server.create_room("individual", waiting_room=False), [("therapist", "Pub"), ("client", "Sub")],
    )
    await subscriber.wait_remote(publisher.participant_id, "video")
    # Chrome starts the upper layers as its bandwidth estimate grows; wait until all three are encoded.
    widths = await publisher.browser.wait_for(
        """() => window.confidantRoom.getStats().then(st => {
             const v = st.local.filter(s => s.kind === 'video' && s.rid && s.frameWidth > 0 && s.bytesSent > 0);
             return v.length === 3 ? Object.fromEntries(v.map(s => [s.rid, s.frameWidth])) : null; })""",
        timeout=60,
        interval=1.0,
    )
    assert widths["q"] < widths["h"] < widths["f"], widths
    track_id = await subscriber.page.evaluate(
        "(pid) => [...window.confidantRoom.remoteTracks.values()].find(t => t.participantId === pid"
        " && t.kind === 'video').trackId",
        publisher.participant_id,
    )
    assert await subscriber.browser.wait_for(FRAME_MONITOR_JS, publisher.participant_id)
    await subscriber.browser.wait_for(
        '(pid) => document.querySelector(`section[data-participant="${pid}"] video`).__mon.frames > 5',
        publisher.participant_id,
    )
    await subscriber.page.evaluate(
        '(pid) => { document.querySelector(`section[data-participant="${pid}"] video`).__mon.maxGap = 0; }',
        publisher.participant_id,
    )
    decoded_before = (await subscriber.remote(publisher.participant_id, "video") or {}).get(
        "framesDecoded", 0
    )
    for layer, rid in enumerate("qhf"):
        started = asyncio.get_running_loop().time()
        await subscriber.page.evaluate("([t, l]) => window.confidantRoom.pinLayer(t, l)", [track_id, layer])
        await subscriber.browser.wait_for(
            '([pid, w]) => document.querySelector(`section[data-participant="${pid}"] video`).__mon.width === w',
            [publisher.participant_id, widths[rid]],
            timeout=2.0,
            interval=0.05,
        )
        took = asyncio.get_running_loop().time() - started
        assert took <= 2.0, f"layer {rid} took {took:.2f}s"
        await asyncio.sleep(2.0)  # decode on the new layer for a while before the next switch
    mon = await subscriber.page.evaluate(
        '(pid) => document.querySelector(`section[data-participant="${pid}"] video`).__mon',
        publisher.participant_id,
    )
    assert mon["maxGap"] < 500, f"video froze for {mon['maxGap']:.0f} ms: {mon}"
    after = await subscriber.remote(publisher.participant_id, "video")
    assert after is not None and after["framesDecoded"] > decoded_before + 60, after
    assert after["frameWidth"] == widths["f"], after


@pytest.mark.netem
async def test_browser_on_a_1mbit_link_gets_audio_and_video(server: ServerProcess, lab: BrowserLab) -> None:
    slow = lab.net()
    slow.limit_rate(1000)  # tbf 1 Mbit/s each way on the client's veth
    therapist, client = await join_all(
        server,
        lab,
        await server.create_room("individual", waiting_room=False),
        [("therapist", "Dr. Lee"), ("client", "Slow link")],
        nets={1: slow},
    )
    await client.wait_remote(therapist.participant_id, "video", timeout=30)
    await client.wait_remote(therapist.participant_id, "audio", timeout=30)
    await therapist.wait_remote(client.participant_id, "video", timeout=30)
    seen = await measure(client, [therapist.participant_id], MEASURE_S)
    video, audio = seen[(therapist.participant_id, "video")], seen[(therapist.participant_id, "audio")]
    assert video["framesDecoded"] > 0 and video["last_frameWidth"] > 0, video
    assert audio["totalSamplesReceived"] > 0, audio
    await client.screenshot("shaped-1mbit-client.png")


# Open bug (issue 3 stays open for it): the aiortc participants starve. With three 720p simulcast Chromiums,
# the server and this test process on two cores (load average ~13), the test process reads its aiortc
# sockets seconds late: the kernel drops 1,500-4,200 datagrams per run on their full receive buffers
# (RcvbufErrors), and aiortc cannot repair the holes (it routes RTX only by SSRC or a payload type unique
# to one receiver, and our bundled subscribe offers give every video section RTX 97), so its jitter
# buffer waits ~512 packets at each hole: 2-5 fps per sender instead of > 5. The down-switch bug that
# made a bot decode nothing at all is fixed (tests/sfu/test_switch_points.py).
@pytest.mark.xfail(reason="aiortc participants starved of CPU on 2 cores lose datagrams and cannot use our RTX "
                          "(see README, Known problems)", strict=False)
async def test_family_session_three_browsers_two_aiortc(server: ServerProcess, lab: BrowserLab) -> None:
    roles = [("therapist", "Dr. Lee"), ("client", "Parent"), ("client", "Teen")]
    room = await server.create_room("family", waiting_room=False)
    browsers = await join_all(server, lab, room, roles)
    peers = [
        AiortcPeer(
            server.base_url.replace("http", "ws") + "/ws", await server.token(room, f"p-bot-{i}", "client"),
            # Thumbnail tiles, as an SDK client shows five people: the bots get the small layer (aiortc
            # cannot decode three 720p streams in real time on two cores).
            video_size=(320, 180),
        )
        for i in range(2)
    ]
    try:
        for peer in peers:
            await peer.start()
        everyone = [b.participant_id for b in browsers] + [p.participant_id for p in peers]
        for b in browsers:
            for other in everyone:
                if other != b.participant_id:
                    await b.wait_remote(other, "video", timeout=30)
                    await b.wait_remote(other, "audio", timeout=30)
        before = [dict(p.frames) for p in peers]
        deltas = await asyncio.gather(*(measure(b, everyone, 5.0) for b in browsers))
        for b, d in zip(browsers, deltas, strict=True):
            for other in everyone:
                if other != b.participant_id:
                    assert d[(other, "video")]["framesDecoded"] > 25, (
                        b.participant_id,
                        other,
                        d[(other, "video")],
                    )
                    assert d[(other, "audio")]["totalSamplesReceived"] > 0, (b.participant_id, other)
        for p, b0 in zip(peers, before, strict=True):
            for other in everyone:
                if other != p.participant_id:
                    for kind in ("video", "audio"):
                        got = p.frames.get((other, kind), 0) - b0.get((other, kind), 0)
                        assert got > 25, (p.participant_id, other, kind, sorted(p.frames.items()))
        await browsers[0].screenshot("family-therapist.png")
    finally:
        for peer in peers:
            await peer.close()


class _DecodeFailures(logging.Handler):
    """Counts aiortc's "failed to decode" warnings (a forwarded frame the subscriber could not decode)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "failed to decode" in record.getMessage()


# With a thumbnail preference the bot starts on the small layer: that start once landed on an RTX copy of
# a keyframe and the bot decoded nothing (tests/sfu/test_switch_points.py).
@pytest.mark.parametrize("video_size", [None, (320, 180)], ids=["top-layer", "thumbnail"])
async def test_browser_simulcast_to_aiortc_decodes_every_frame(
    server: ServerProcess, lab: BrowserLab, video_size: tuple[int, int] | None
) -> None:
    room = await server.create_room("individual", waiting_room=False)
    (publisher,) = await join_all(server, lab, room, [("therapist", "Pub")])
    peer = AiortcPeer(server.base_url.replace("http", "ws") + "/ws", await server.token(room, "p-bot", "client"),
                      video_size=video_size)
    failures = _DecodeFailures()
    logger = logging.getLogger("aiortc.rtcrtpreceiver")
    logger.addHandler(failures)
    try:
        await peer.start()
        key = (publisher.participant_id, "video")
        for _ in range(100):
            if peer.frames.get(key, 0) > 0:
                break
            await asyncio.sleep(0.2)
        before = peer.frames.get(key, 0)
        await asyncio.sleep(MEASURE_S)
        got = peer.frames.get(key, 0) - before
        assert failures.count == 0, f"{failures.count} undecodable frames, {peer.frames}"
        assert got >= 15 * MEASURE_S, peer.frames
    finally:
        logger.removeHandler(failures)
        await peer.close()
