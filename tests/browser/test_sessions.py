"""End-to-end sessions in real headless Chromium (each in its own namespace) through the real server."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.browser.aiortc_peer import AiortcPeer, ParticipantProcess
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


BOT_WINDOW_S = 10.0
# What "receives everyone" means here, per (receiver, sender), with margin for two loaded cores (7 runs at
# load average 9-12: browsers decode each other's video at 9.6-20.5 fps and the bots' at 19.7-32.6, bots
# decode browsers at 14.4-20 fps and each other at 28.8-36, audio arrives at 41-65/s). Bots sharing the
# test process and one RTX payload type decoded 2-5 fps; a pair that gets nothing decodes 0.
MIN_VIDEO_FPS = 3.0
MIN_AUDIO_PER_S = 15.0  # browsers: Opus packets (50/s sent); bots: decoded 20 ms frames


# Load-sensitive like the integration family of seven: in 3 of about 10 full-set runs on two cores the
# therapist's downlink was judged too thin for any video (0 fps from all four senders, audio intact) for the
# whole window: the false audio-only under CPU starvation in the README's Known problems. A rerun must pass
# in full. Up to three times, 20 s apart: misses come in streaks while the VM's host is busy (in two CI runs
# every attempt failed, once with other work sharing the cores and once with none).
@pytest.mark.flaky(reruns=3, reruns_delay=20)
async def test_family_session_three_browsers_two_aiortc(server: ServerProcess, lab: BrowserLab) -> None:
    """Everyone receives everyone: each browser and each aiortc participant decodes every other one's video
    and gets their audio. The aiortc participants run one process each (as tests/integration's family of
    seven) and show videos as thumbnails, so the server forwards them the small simulcast layer."""
    # Three Chromiums, two aiortc peers and the SFU share two cores here; in service each has its own host.
    # Without priority the SFU's event loop lagged 0.25-1 s at times and its downlink estimate, reading that
    # as path delay, paused a subscriber's video for whole windows (reason "bandwidth" on a veth). Chromium
    # adapts its encoding to the CPU it gets; the Python peers do not, so they come next (nice -5), with
    # receive buffers that outlast a stall (the kernel dropped 300-2,300 datagrams a run on the default).
    server.favour()
    roles = [("therapist", "Dr. Lee"), ("client", "Parent"), ("client", "Teen")]
    room = await server.create_room("family", waiting_room=False)
    browsers = await join_all(server, lab, room, roles)
    ws_url = server.base_url.replace("http", "ws") + "/ws"
    bot_ids = [f"p-bot-{i}" for i in range(2)]
    everyone = [b.participant_id for b in browsers] + bot_ids
    bots: list[ParticipantProcess] = []
    try:
        for i, bot_id in enumerate(bot_ids):
            bots.append(await ParticipantProcess.start(
                ws_url, await server.token(room, bot_id, "client"), seed=i, expect=len(everyone) - 1,
                window=BOT_WINDOW_S, video_size=(320, 180), camera=(160, 120), nice=-5,
                rcvbuf=4 << 20,
            ))
        for b in browsers:
            for other in everyone:
                if other != b.participant_id:
                    await b.wait_remote(other, "video", timeout=30)
                    await b.wait_remote(other, "audio", timeout=30)
        deltas = await asyncio.gather(*(measure(b, everyone, MEASURE_S) for b in browsers))
        reports = [await bot.report(timeout=90) for bot in bots]
        await browsers[0].screenshot("family-therapist.png")
    finally:
        for bot in bots:
            await bot.close()
    got: dict[str, tuple[float, float]] = {}  # "receiver<-sender" -> (video fps, audio per second)
    for b, d in zip(browsers, deltas, strict=True):
        for other in everyone:
            if other != b.participant_id:
                video, audio = d.get((other, "video"), {}), d.get((other, "audio"), {})
                got[f"{b.participant_id}<-{other}"] = (round(video.get("framesDecoded", 0) / MEASURE_S, 1),
                                                       round(audio.get("packetsReceived", 0) / MEASURE_S, 1))
    for bot_id, report in zip(bot_ids, reports, strict=True):
        assert report["participant_id"] == bot_id, report
        for other in everyone:
            if other != bot_id:
                tracks = [t for t in report["tracks"].values() if t["participant_id"] == other]
                got[f"{bot_id}<-{other}"] = (max((t["fps"] for t in tracks if t["kind"] == "video"), default=0),
                                             max((t["fps"] for t in tracks if t["kind"] == "audio"), default=0))
    print(f"receiver<-sender: (video fps, audio/s): {got}")
    assert len(got) == len(everyone) * (len(everyone) - 1)
    short = {pair: v for pair, v in got.items() if v[0] < MIN_VIDEO_FPS or v[1] < MIN_AUDIO_PER_S}
    assert not short, (f"below {MIN_VIDEO_FPS} fps video or {MIN_AUDIO_PER_S}/s audio: {short}; all: {got}; "
                       f"pauses the bots were told of: {[r['pauses'] for r in reports]}")


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
