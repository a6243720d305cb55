"""The harness itself: namespaced Chromium reaches a server in the test namespace, has a fake camera, and
its link can be shaped (tbf on the veth, or the userspace emulator for delay)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.browser.harness import BrowserLab
from tests.linkemu import LinkParams
from tests.netns import HOST_ADDR

pytestmark = pytest.mark.browser

PAGE = """<!doctype html><meta charset=utf-8><title>harness</title><video id=v autoplay muted playsinline></video>
<script>
window.frames_seen = 0;
window.start = async () => {
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 360}, audio: true});
  const v = document.getElementById('v'); v.srcObject = stream;
  const tick = () => { window.frames_seen++; v.requestVideoFrameCallback(tick); };
  v.requestVideoFrameCallback(tick);
  return stream.getTracks().map(t => t.kind + ':' + t.label);
};
window.candidates = async () => {
  const pc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver('audio');
  await pc.setLocalDescription(await pc.createOffer());
  while (pc.iceGatheringState !== 'complete') await new Promise(r => setTimeout(r, 50));
  const c = pc.localDescription.sdp.split('\\r\\n').filter(l => l.startsWith('a=candidate'));
  pc.close(); return c;
};
window.timedFetch = async (path) => {
  const t0 = performance.now(); const r = await fetch(path, {cache: 'no-store'});
  const n = (await r.arrayBuffer()).byteLength; return {ms: performance.now() - t0, bytes: n};
};
</script>"""


@pytest.fixture
async def page_server() -> AsyncIterator[str]:
    async def index(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def blob(request: web.Request) -> web.Response:
        return web.Response(
            body=b"\0" * int(request.query.get("n", "1")), content_type="application/octet-stream"
        )

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/blob", blob)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST_ADDR, 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://{HOST_ADDR}:{port}"
    finally:
        await runner.cleanup()


async def test_fake_camera_in_namespaced_chromium(lab: BrowserLab, page_server: str) -> None:
    b = await lab.launch(page_server)
    await b.page.goto(page_server + "/")
    tracks = await b.page.evaluate("start()")
    assert sorted(t.split(":")[0] for t in tracks) == ["audio", "video"]
    first = await b.wait_for("() => window.frames_seen >= 5 && window.frames_seen")
    later = await b.wait_for("(n) => window.frames_seen > n + 10 && window.frames_seen", first)
    assert later > first
    # Chromium gathers exactly the namespace's own address (no 127.0.0.1, no mDNS names).
    cands = await b.page.evaluate("candidates()")
    assert cands and all(b.net.inside in c for c in cands), cands
    # The browser really runs in its namespace.
    assert len(b.net.pids()) >= 3


@pytest.mark.netem
async def test_tbf_limits_the_downlink(lab: BrowserLab, page_server: str) -> None:
    b = await lab.launch(page_server)
    await b.page.goto(page_server + "/")
    n = 250_000
    fast = await b.page.evaluate("(p) => timedFetch(p)", f"/blob?n={n}")
    b.net.limit_rate(1000, uplink=False)
    slow = await b.page.evaluate("(p) => timedFetch(p)", f"/blob?n={n}")
    assert slow["bytes"] == fast["bytes"] == n
    # 2 Mbit at 1 Mbit/s needs ~2 s, the unshaped veth a few ms.
    assert slow["ms"] > 1500 > fast["ms"] * 3, (fast, slow)


@pytest.mark.netem
async def test_linkemu_adds_delay(lab: BrowserLab, page_server: str) -> None:
    b = await lab.launch(page_server, link=LinkParams(delay_ms=60))
    await b.page.goto(page_server + "/")
    r = await b.page.evaluate("(p) => timedFetch(p)", "/blob?n=10")
    # A keep-alive request is one round trip: two one-way delays of 60 ms.
    assert r["ms"] >= 115, r
    cands = await b.page.evaluate("candidates()")
    assert cands and all(b.net.inside in c for c in cands), cands
