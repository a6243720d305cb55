"""A cheap synthetic participant: replays pre-encoded VP8 + Opus and counts what it receives, never decoding.

It runs our own transport in the client role (ICE controlling, DTLS client, SRTP), one UDP socket per
peer connection, so hundreds of participants fit in one process. Used by the forwarding benchmark and
the load tests; integration tests that must decode use `client.aiortc_participant` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

from aiortc.sdp import SessionDescription

from client.media import AUDIO_CLOCK, AUDIO_PTIME, VIDEO_CLOCK, Clip
from sfu import rtcp
from sfu.rtp import EgressWriter, ExtIds, RtpError, SeqUnwrapper, parse_rtp
from sfu.stats import MediaStats
from sfu.transport import TransportState, WebRtcTransport
from sfu.twcc import TwccRecorder
from sfu.udp import UdpEndpoint

TCC_EXT_ID = 3
TCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
AUDIO_PT, VIDEO_PT, RTX_PT = 111, 96, 97
FREEZE_GAP = 0.5  # a gap longer than this between video packets counts as a freeze


@dataclass
class StreamCounter:
    """What one received SSRC delivered."""

    kind: str
    packets: int = 0
    bytes: int = 0
    first_at: float | None = None
    last_at: float | None = None
    max_gap: float = 0.0
    freezes: int = 0
    seq: SeqUnwrapper = field(default_factory=SeqUnwrapper)
    base_seq: int | None = None
    max_seq: int = -1
    # Receiver-report state (RFC 3550 appendix A.3 and A.8), so the SFU sees loss, jitter and RTT.
    jitter: float = 0.0  # in timestamp units
    last_transit: float | None = None
    expected_prior: int = 0
    received_prior: int = 0
    last_sr_middle: int = 0
    last_sr_at: float | None = None

    @property
    def clock_rate(self) -> int:
        return AUDIO_CLOCK if self.kind == "audio" else VIDEO_CLOCK

    @property
    def jitter_s(self) -> float:
        return self.jitter / self.clock_rate

    def on_packet(self, seq: int, size: int, now: float, ts: int = 0) -> None:
        transit = now * self.clock_rate - ts
        if self.last_transit is not None:
            d = abs(transit - self.last_transit)
            if d < self.clock_rate:  # a timestamp jump (layer switch, wrap) is not jitter
                self.jitter += (d - self.jitter) / 16
        self.last_transit = transit
        ext = self.seq.unwrap(seq)
        if self.base_seq is None:
            self.base_seq = ext
        self.max_seq = max(self.max_seq, ext)
        if self.last_at is not None:
            gap = now - self.last_at
            self.max_gap = max(self.max_gap, gap)
            if gap > FREEZE_GAP:
                self.freezes += 1
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        self.packets += 1
        self.bytes += size

    @property
    def lost(self) -> int:
        if self.base_seq is None:
            return 0
        return max(0, self.max_seq - self.base_seq + 1 - self.packets)

    def report_block(self, ssrc: int, now: float) -> rtcp.ReportBlock:
        assert self.base_seq is not None
        expected = self.max_seq - self.base_seq + 1
        expected_interval = expected - self.expected_prior
        lost_interval = expected_interval - (self.packets - self.received_prior)
        self.expected_prior, self.received_prior = expected, self.packets
        fraction = (lost_interval << 8) // expected_interval if expected_interval > 0 and lost_interval > 0 else 0
        dlsr = int((now - self.last_sr_at) * 65536) & 0xFFFFFFFF if self.last_sr_at is not None else 0
        return rtcp.ReportBlock(ssrc=ssrc, fraction_lost=min(fraction, 255), cumulative_lost=min(self.lost, 0x7FFFFF),
                                highest_seq=self.max_seq & 0xFFFFFFFF, jitter=int(self.jitter),
                                lsr=self.last_sr_middle, dlsr=dlsr)


def _session_header(transport: WebRtcTransport, mids: list[str], sess_id: int) -> list[str]:
    alg, fp = transport.fingerprint
    return [
        "v=0", f"o=- {sess_id} 2 IN IP4 0.0.0.0", "s=-", "t=0 0",
        f"a=group:BUNDLE {' '.join(mids)}", "a=msid-semantic: WMS *",
        f"a=ice-ufrag:{transport.ice_ufrag}", f"a=ice-pwd:{transport.ice_pwd}", f"a=fingerprint:{alg} {fp}",
    ]


def _server_address(sdp: SessionDescription) -> tuple[str, tuple[str, str, list[tuple[str, str]]]]:
    """The server's first host candidate, ICE credentials and fingerprints from its SDP."""
    media = sdp.media[0]
    ice = media.ice
    assert ice is not None and media.dtls is not None
    assert ice.usernameFragment is not None and ice.password is not None
    fingerprints = [(f.algorithm, f.value) for f in media.dtls.fingerprints]
    cand = media.ice_candidates[0]
    return f"{cand.ip}:{cand.port}", (ice.usernameFragment, ice.password, fingerprints)


class _Link:
    """One client-role transport on its own socket, with the listener callbacks routed to its owner."""

    def __init__(self, owner: ReplayParticipant, name: str) -> None:
        self.owner = owner
        self.name = name
        self.endpoint: UdpEndpoint | None = None
        self.transport: WebRtcTransport | None = None
        self.connected = asyncio.Event()

    async def open(self, host: str, stats: MediaStats) -> WebRtcTransport:
        self.endpoint = await UdpEndpoint.create(host, 0, stats=stats)
        self.transport = self.endpoint.create_transport(self, role="client")
        return self.transport

    def start(self, remote_sdp: str) -> None:
        assert self.endpoint is not None and self.transport is not None
        parsed = SessionDescription.parse(remote_sdp)
        addr, (ufrag, pwd, fps) = _server_address(parsed)
        ip, port = addr.rsplit(":", 1)
        self.transport.set_remote(ice_ufrag=ufrag, ice_pwd=pwd, fingerprints=fps)
        self.endpoint.connect(self.transport, (ip, int(port)))

    def on_rtp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        self.owner.rtp_received(data, now=now)

    def on_rtcp(self, transport: WebRtcTransport, data: bytes, *, now: float) -> None:
        self.owner.rtcp_received(self.name, data, now=now)

    def on_state(self, transport: WebRtcTransport, state: TransportState, reason: str | None) -> None:
        if state is TransportState.CONNECTED:
            self.connected.set()
        elif state is TransportState.CLOSED:
            self.owner.link_closed(self.name, reason)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close("client_left")
        if self.endpoint is not None:
            self.endpoint.close()


class ReplayParticipant:
    """Publishes a pre-encoded clip (one VP8 stream + Opus) and counts the RTP it receives."""

    def __init__(self, clip: Clip, *, host: str, rng: random.Random | None = None) -> None:
        self.clip = clip
        self.host = host
        self._rng = rng or random.Random()
        self.stats = MediaStats()
        self.publish_link = _Link(self, "publish")
        self.subscribe_link = _Link(self, "subscribe")
        self.audio_ssrc = self._rng.randrange(1, 1 << 32)
        self.video_ssrc = self._rng.randrange(1, 1 << 32)
        self.rtx_ssrc = self._rng.randrange(1, 1 << 32)
        self.received: dict[int, StreamCounter] = {}
        self._kinds: dict[int, str] = {}  # ssrc -> kind, from the subscribe offer
        self._twcc: TwccRecorder | None = None
        self._ext_ids = ExtIds.from_map({})
        self._pace_task: asyncio.Task[None] | None = None
        self._feedback_task: asyncio.Task[None] | None = None
        self._video_index = 0
        self.keyframe_requests = 0
        self.packets_sent = 0
        self.closed_reason: str | None = None

    # -- publishing --------------------------------------------------------------------------------

    async def publish_offer(self) -> str:
        t = await self.publish_link.open(self.host, self.stats)
        lines = _session_header(t, ["0", "1"], self._rng.randrange(1 << 62))
        common = ["c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0", "a=setup:actpass", "a=rtcp-mux", "a=sendonly",
                  f"a=extmap:{TCC_EXT_ID} {TCC_URI}"]
        lines += [f"m=audio 9 UDP/TLS/RTP/SAVPF {AUDIO_PT}", *common, "a=mid:0", "a=msid:replay audio0",
                  f"a=rtpmap:{AUDIO_PT} opus/48000/2", f"a=rtcp-fb:{AUDIO_PT} transport-cc",
                  f"a=fmtp:{AUDIO_PT} minptime=10;useinbandfec=1", f"a=ssrc:{self.audio_ssrc} cname:replay"]
        lines += [f"m=video 9 UDP/TLS/RTP/SAVPF {VIDEO_PT} {RTX_PT}", *common, "a=mid:1", "a=msid:replay video0",
                  f"a=rtpmap:{VIDEO_PT} VP8/90000", f"a=rtcp-fb:{VIDEO_PT} nack", f"a=rtcp-fb:{VIDEO_PT} nack pli",
                  f"a=rtcp-fb:{VIDEO_PT} ccm fir", f"a=rtcp-fb:{VIDEO_PT} transport-cc",
                  f"a=rtpmap:{RTX_PT} rtx/90000", f"a=fmtp:{RTX_PT} apt={VIDEO_PT}",
                  f"a=ssrc-group:FID {self.video_ssrc} {self.rtx_ssrc}",
                  f"a=ssrc:{self.video_ssrc} cname:replay", f"a=ssrc:{self.rtx_ssrc} cname:replay"]
        return "\r\n".join(lines) + "\r\n"

    async def publish_answered(self, answer_sdp: str, *, timeout: float = 10.0) -> None:
        self.publish_link.start(answer_sdp)
        await asyncio.wait_for(self.publish_link.connected.wait(), timeout)
        self._pace_task = asyncio.create_task(self._pace())

    async def _pace(self) -> None:
        """Send the clip in real time: a video frame every 1/fps (its packets back to back), audio every 20 ms."""
        loop = asyncio.get_running_loop()
        transport = self.publish_link.transport
        assert transport is not None
        clip = self.clip
        video = EgressWriter(self.video_ssrc, VIDEO_PT, transport_cc_id=TCC_EXT_ID)
        audio = EgressWriter(self.audio_ssrc, AUDIO_PT, transport_cc_id=TCC_EXT_ID)
        vseq, aseq, tcc = self._rng.randrange(1 << 16), self._rng.randrange(1 << 16), 0
        vts0, ats0 = self._rng.randrange(1 << 32), self._rng.randrange(1 << 32)
        frame_interval = 1.0 / clip.fps
        start = loop.time()
        n_video = n_audio = 0
        send = transport.send_rtp
        while True:
            next_video = start + n_video * frame_interval
            next_audio = start + n_audio * AUDIO_PTIME
            due = min(next_video, next_audio)
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if next_audio <= next_video:
                payload = clip.audio[n_audio % len(clip.audio)]
                tcc = (tcc + 1) & 0xFFFF
                send(audio.build(marker=False, seq=aseq, ts=ats0 + n_audio * int(AUDIO_CLOCK * AUDIO_PTIME),
                                 tcc_seq=tcc, payload=payload))
                aseq = (aseq + 1) & 0xFFFF
                n_audio += 1
                self.packets_sent += 1
            else:
                frame = clip.video[self._video_index % len(clip.video)]
                self._video_index += 1
                ts = vts0 + n_video * VIDEO_CLOCK // clip.fps
                last = len(frame.payloads) - 1
                for i, payload in enumerate(frame.payloads):
                    tcc = (tcc + 1) & 0xFFFF
                    send(video.build(marker=i == last, seq=vseq, ts=ts, tcc_seq=tcc, payload=payload))
                    vseq = (vseq + 1) & 0xFFFF
                    self.packets_sent += 1
                n_video += 1

    def _jump_to_keyframe(self) -> None:
        """Answer a PLI/FIR the way an encoder would: the next frame sent is a keyframe."""
        keyframes = self.clip.keyframe_indices
        position = self._video_index % len(self.clip.video)
        later = [k for k in keyframes if k >= position]
        target = later[0] if later else keyframes[0] + len(self.clip.video)
        self._video_index += target - position
        self.keyframe_requests += 1

    # -- subscribing -------------------------------------------------------------------------------

    async def subscribe_answer(self, offer_sdp: str) -> str:
        """Answer the SFU's subscribe offer: receive-only, everything it offers."""
        if self.subscribe_link.transport is None:
            await self.subscribe_link.open(self.host, self.stats)
        t = self.subscribe_link.transport
        assert t is not None
        offer = SessionDescription.parse(offer_sdp)
        mids = [m.rtp.muxId for m in offer.media]
        lines = _session_header(t, mids, self._rng.randrange(1 << 62))
        for m in offer.media:
            pts = " ".join(str(c.payloadType) for c in m.rtp.codecs) or "0"
            lines += [f"m={m.kind} {m.port} UDP/TLS/RTP/SAVPF {pts}", "c=IN IP4 0.0.0.0",
                      "a=rtcp:9 IN IP4 0.0.0.0", "a=setup:active", "a=rtcp-mux", f"a=mid:{m.rtp.muxId}",
                      "a=recvonly" if m.direction == "sendonly" else "a=inactive"]
            for codec in m.rtp.codecs:
                channels = f"/{codec.channels}" if codec.channels else ""
                lines.append(f"a=rtpmap:{codec.payloadType} {codec.name}/{codec.clockRate}{channels}")
                if codec.parameters:
                    params = ";".join(f"{k}={v}" if v is not None else k for k, v in codec.parameters.items())
                    lines.append(f"a=fmtp:{codec.payloadType} {params}")
                for fb in codec.rtcpFeedback:
                    lines.append(f"a=rtcp-fb:{codec.payloadType} {fb.type}{' ' + fb.parameter if fb.parameter else ''}")
            for ext in m.rtp.headerExtensions:
                lines.append(f"a=extmap:{ext.id} {ext.uri}")
                if ext.uri == TCC_URI:
                    self._ext_ids = ExtIds(mid=None, rid=None, repaired_rid=None, transport_cc=ext.id,
                                           abs_send_time=None, audio_level=None)
            for ssrc_info in m.ssrc:
                self._kinds[ssrc_info.ssrc] = m.kind
        if self._twcc is None:
            self._twcc = TwccRecorder(sender_ssrc=self._rng.randrange(1, 1 << 32), media_ssrc=0)
        answer = "\r\n".join(lines) + "\r\n"
        if self.subscribe_link.endpoint is not None and not self.subscribe_link.connected.is_set() \
                and self._feedback_task is None:
            self.subscribe_link.start(offer_sdp)
            self._feedback_task = asyncio.create_task(self._send_feedback())
        return answer

    async def _send_feedback(self) -> None:
        """Transport-wide feedback every 100 ms and receiver reports every second, as a browser would."""
        loop = asyncio.get_running_loop()
        rr_ssrc = self._rng.randrange(1, 1 << 32)
        ticks = 0
        while True:
            await asyncio.sleep(0.1)
            t = self.subscribe_link.transport
            if t is None or self._twcc is None or t.state is not TransportState.CONNECTED:
                continue
            for fb in self._twcc.build_feedback(now=loop.time()):
                t.send_rtcp(fb)
            ticks += 1
            if ticks % 10 == 0:
                now = time.monotonic()  # the transport's clock, which SR arrival times are on
                blocks = [c.report_block(ssrc, now) for ssrc, c in self.received.items() if c.base_seq is not None]
                for i in range(0, len(blocks), 31):  # RFC 3550 section 6.4.2: 31 blocks per report
                    t.send_rtcp(bytes(rtcp.ReceiverReport(ssrc=rr_ssrc, reports=tuple(blocks[i : i + 31]))))

    def rtp_received(self, data: bytes, *, now: float) -> None:
        try:
            pkt = parse_rtp(data, self._ext_ids)
        except RtpError:
            return
        if pkt.tcc_seq is not None and self._twcc is not None:
            self._twcc.record(pkt.tcc_seq, now=now)
        counter = self.received.get(pkt.ssrc)
        if counter is None:
            counter = self.received[pkt.ssrc] = StreamCounter(self._kinds.get(pkt.ssrc, "unknown"))
        counter.on_packet(pkt.seq, len(data), now, pkt.ts)

    def rtcp_received(self, link: str, data: bytes, *, now: float) -> None:
        packets, _ = rtcp.parse_compound(data)
        if link != "publish":
            for p in packets:
                if isinstance(p, rtcp.SenderReport) and (counter := self.received.get(p.ssrc)) is not None:
                    counter.last_sr_middle = (p.ntp_timestamp >> 16) & 0xFFFFFFFF
                    counter.last_sr_at = now
            return
        if any(isinstance(p, (rtcp.Pli, rtcp.Fir)) for p in packets):
            self._jump_to_keyframe()

    def link_closed(self, name: str, reason: str | None) -> None:
        self.closed_reason = f"{name}:{reason}"

    # -- summary -----------------------------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        return {
            "packets": sum(c.packets for c in self.received.values()),
            "bytes": sum(c.bytes for c in self.received.values()),
            "lost": sum(c.lost for c in self.received.values()),
            "freezes": sum(c.freezes for c in self.received.values() if c.kind == "video"),
        }

    async def close(self) -> None:
        for task in (self._pace_task, self._feedback_task):
            if task is not None:
                task.cancel()
        self.publish_link.close()
        self.subscribe_link.close()


class ReplaySession:
    """A replay participant driven through the signalling protocol: join, publish, answer every offer."""

    def __init__(self, ws_url: str, token: str, clip: Clip, *, host: str, publish: bool = True,
                 rng: random.Random | None = None) -> None:
        from client.protocol import SignallingClient

        self.signalling = SignallingClient(ws_url)
        self.media = ReplayParticipant(clip, host=host, rng=rng)
        self._token = token
        self._publish = publish
        self._offers: asyncio.Task[None] | None = None
        self.joined: dict[str, object] = {}
        self.offers_answered = 0
        self.subscribed = asyncio.Event()  # set once the subscribe connection is up

    async def start(self, *, timeout: float = 10.0) -> None:
        await self.signalling.connect()
        self.joined = await self.signalling.join(self._token)
        self._offers = asyncio.create_task(self._answer_offers())
        if self._publish:
            reply = await self.signalling.publish(await self.media.publish_offer())
            await self.media.publish_answered(str(reply["sdp"]), timeout=timeout)

    async def _answer_offers(self) -> None:
        while True:
            event = await self.signalling.next_event("offer", timeout=1e9)
            answer = await self.media.subscribe_answer(str(event["sdp"]))
            await self.signalling.answer(int(event["offer_id"]), answer)
            self.offers_answered += 1
            if not self.subscribed.is_set():
                await self.media.subscribe_link.connected.wait()
                self.subscribed.set()

    async def close(self) -> None:
        if self._offers is not None:
            self._offers.cancel()
            # Retrieve its outcome: an answer in flight when the server closes the socket raises there.
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, TimeoutError):
                await self._offers
        await self.signalling.leave()
        await self.media.close()


# -- subprocess entry point: a subscribe-only participant that reports what it gets --------------------


class _ReportingParticipant(ReplayParticipant):
    """Counts received packets by what they are (audio, video media, padding-only) for JSON-line reports."""

    def __init__(self, clip: Clip, *, host: str) -> None:
        super().__init__(clip, host=host)
        self.counts = {"audio": 0, "video": 0, "padding": 0}
        self.last_audio: float | None = None
        self.max_audio_gap = 0.0  # since the last report

    def rtp_received(self, data: bytes, *, now: float) -> None:
        super().rtp_received(data, now=now)
        try:
            pkt = parse_rtp(data, self._ext_ids)
        except RtpError:
            return
        if pkt.payload_end <= pkt.payload_offset:
            self.counts["padding"] += 1  # probes: their transport-wide seq was recorded above
        elif self._kinds.get(pkt.ssrc) == "audio":
            self.counts["audio"] += 1
            if self.last_audio is not None:
                self.max_audio_gap = max(self.max_audio_gap, now - self.last_audio)
            self.last_audio = now
        else:
            self.counts["video"] += 1


async def _report(ws_url: str, token: str, host: str, seconds: float, interval: float) -> None:
    import json
    import sys
    import time

    def emit(record: dict[str, object]) -> None:
        sys.stdout.write(json.dumps({"t": round(time.monotonic(), 4), **record}) + "\n")
        sys.stdout.flush()

    session = ReplaySession(ws_url, token, Clip(30, 0, 0, (), ()), host=host, publish=False)
    media = session.media = _ReportingParticipant(session.media.clip, host=host)
    await session.start()
    emit({"joined": True})
    printed: set[int] = set()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(interval)
            for event in session.signalling.pending_events():
                if id(event) not in printed and event.get("type") != "offer":
                    printed.add(id(event))
                    emit({"event": event})
            emit({"packets": dict(media.counts), "max_audio_gap": round(media.max_audio_gap, 4)})
            media.counts = dict.fromkeys(media.counts, 0)
            media.max_audio_gap = 0.0
    finally:
        await session.close()


def main(argv: list[str] | None = None) -> None:
    """`python -m client.replay --ws URL --token T --host ADDR --seconds N`: subscribe only and print, every
    `--interval` seconds, a JSON line with the packets received by kind, and each protocol event as it comes."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--ws", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--host", required=True, help="local address to bind the media socket to")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args(argv)
    asyncio.run(_report(args.ws, args.token, args.host, args.seconds, args.interval))


if __name__ == "__main__":
    main()
