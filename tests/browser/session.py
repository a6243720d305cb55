"""What the end-to-end tests do with a browser on the demo page: join with a token, read SDK stats, watch frames."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tests.browser.harness import Browser, artifact_path

# Installed on a tile's <video>: every presented frame updates width/height and the longest gap between frames.
FRAME_MONITOR_JS = """(pid) => {
  const v = document.querySelector(`section[data-participant="${pid}"] video`);
  if (!v) return false;
  if (v.__mon) return true;
  const m = v.__mon = {frames: 0, width: 0, height: 0, last: 0, maxGap: 0, widths: []};
  const tick = (now, meta) => {
    if (m.last) m.maxGap = Math.max(m.maxGap, now - m.last);
    m.last = now; m.frames++;
    if (meta.width !== m.width) m.widths.push([Math.round(now), meta.width]);
    m.width = meta.width; m.height = meta.height;
    v.requestVideoFrameCallback(tick);
  };
  v.requestVideoFrameCallback(tick);
  return true;
}"""


@dataclass
class Participant:
    browser: Browser
    participant_id: str = ""

    @property
    def page(self) -> Any:
        return self.browser.page

    async def join(self, base_url: str, token: str, *, name: str = "") -> str:
        await self.page.goto(f"{base_url}/static/index.html?autojoin=1&token={token}&name={name}")
        state = await self.browser.wait_for(
            "() => document.body.dataset.state === 'joined' || document.body.dataset.state === 'error'"
            " ? document.body.dataset.state : null",
            timeout=20,
        )
        if state != "joined":
            status = await self.page.text_content("#status")
            raise AssertionError(f"join failed: {status}; console: {self.browser.console[-15:]}")
        self.participant_id = await self.page.evaluate("() => window.confidantRoom.localParticipant.id")
        return self.participant_id

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.page.evaluate("() => window.confidantRoom.getStats()")
        return result

    async def remote(self, participant_id: str, kind: str) -> dict[str, Any] | None:
        for s in (await self.stats())["remote"]:
            if s["participantId"] == participant_id and s["kind"] == kind:
                return dict(s)
        return None

    async def wait_remote(self, participant_id: str, kind: str, *, timeout: float = 20) -> dict[str, Any]:
        """Until this browser decodes/plays media from `participant_id` (frames or samples rising)."""
        js = """([pid, kind]) => window.confidantRoom.getStats().then(st => st.remote.find(
                  s => s.participantId === pid && s.kind === kind &&
                       (kind === 'video' ? s.framesDecoded > 0 : s.totalSamplesReceived > 0)) || null)"""
        result: dict[str, Any] = await self.browser.wait_for(js, [participant_id, kind], timeout=timeout)
        return result

    async def screenshot(self, name: str) -> None:
        await self.page.screenshot(path=str(artifact_path(name)))


async def measure(
    p: Participant, sources: list[str], seconds: float
) -> dict[tuple[str, str], dict[str, float]]:
    """Per (source, kind): counter deltas over `seconds` and the last sample."""
    before = {
        (s["participantId"], s["kind"]): s
        for s in (await p.stats())["remote"]
        if s["participantId"] in sources
    }
    await asyncio.sleep(seconds)
    after = {
        (s["participantId"], s["kind"]): s
        for s in (await p.stats())["remote"]
        if s["participantId"] in sources
    }
    out: dict[tuple[str, str], dict[str, float]] = {}
    for key, a in after.items():
        b = before.get(key, {})
        d = {
            k: float(v) - float(b.get(k, 0))
            for k, v in a.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        d["last_frameWidth"] = float(a.get("frameWidth", 0))
        out[key] = d
    return out


def assert_media_flows(
    deltas: dict[tuple[str, str], dict[str, float]],
    source: str,
    seconds: float,
    *,
    min_fps: float = 15.0,
    max_concealed: float = 0.05,
) -> None:
    v = deltas.get((source, "video"))
    a = deltas.get((source, "audio"))
    assert v is not None and a is not None, f"no video/audio from {source}: {sorted(deltas)}"
    assert v["framesDecoded"] / seconds >= min_fps, f"video from {source}: {v}"
    assert v["last_frameWidth"] > 0, v
    assert a["totalSamplesReceived"] > 0, a
    concealed = a["concealedSamples"] / a["totalSamplesReceived"]
    assert concealed < max_concealed, f"audio from {source} concealed {concealed:.1%}: {a}"
