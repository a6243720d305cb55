"""One participant's WebSocket: the protocol of docs/protocol.md section 4, on top of the hub.

Messages are handled one at a time per connection; replies and events go through a bounded outbox so
that telling one participant something never blocks or fails another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from sfu.params import ConsumerParams, MediaKind
from sfu.transport import TransportState
from signalling import care, keys
from signalling.config import Config
from signalling.hub import Hub
from signalling.media_events import DownlinkEvents, PublishedTrackEvents, TrackEvents
from signalling.payload_types import PayloadTypes
from signalling.quality import LinkStats
from signalling.rooms import Room, RoomError
from signalling.sdp import PublishOffer, SdpError, parse_publish_offer, parse_subscribe_answer
from signalling.sdp_writer import (
    AUDIO_PAYLOAD_TYPES,
    LocalTransport,
    SubscribeSlot,
    write_publish_answer,
    write_subscribe_offer,
)
from signalling.tokens import JoinClaims, TokenError, verify_token

if TYPE_CHECKING:
    from sfu.consumer import Consumer
    from sfu.producer import Producer
    from sfu.transport import WebRtcTransport

log = logging.getLogger("confidant.signalling")

MAX_MESSAGE_BYTES = 64 * 1024
HARD_FRAME_LIMIT = 1024 * 1024  # aiohttp closes with 1009 by itself above this
OUTBOX_LIMIT = 1000
MAX_PREFERRED_PIXELS = 16384  # a video_preference size above this is a client bug, not a screen
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG = 1000, 1008, 1009
CLOSE_REPLACED, CLOSE_ROOM_ENDED, CLOSE_TRANSPORT = 4000, 4001, 4002
JOIN_ERRORS = {"invalid_token", "token_expired", "wrong_room", "room_not_found", "room_full", "room_ended",
               "room_locked", "removed"}


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Published:
    track_id: str
    producer: Producer


@dataclass
class _Received:
    """A track this subscriber receives. The consumer exists once an answer covered its m-section: media
    for an SSRC the subscriber has not seen in SDP yet gets misrouted by some clients (aiortc routes it
    by payload type to another receiver)."""

    slot_index: int
    params: ConsumerParams
    producer: Producer
    publisher_id: str
    consumer: Consumer | None = None
    pinned: int | None = None
    preference: tuple[tuple[int, int] | None, bool] = (None, True)  # (max size, visible), adaptive stream


class Session:
    def __init__(self, ws: web.WebSocketResponse, hub: Hub, config: Config) -> None:
        self.ws = ws
        self.hub = hub
        self.config = config
        self.participant_id = ""
        self.claims: JoinClaims | None = None
        self.room: Room | None = None
        self._outbox: asyncio.Queue[dict[str, Any] | tuple[int, str]] = asyncio.Queue()
        self._closing = False
        self._pub: WebRtcTransport | None = None
        self._pub_ufrag: str | None = None
        self._published: dict[str, _Published] = {}  # by mid
        self._sub: WebRtcTransport | None = None
        self._sub_remote_set = False
        self._slots: list[SubscribeSlot] = []
        self._sent_slots: list[SubscribeSlot] = []  # as in the outstanding (or last) offer
        self._payload_types = PayloadTypes(reserved=set(AUDIO_PAYLOAD_TYPES))
        self._received: dict[str, _Received] = {}  # by track id
        self._offer_id = 0
        self._outstanding: int | None = None
        self._dirty = False
        self._session_id = secrets.randbits(62)
        self._tasks: set[asyncio.Future[None]] = set()
        self.join_started: float | None = None  # media clock when the token was presented (join latency)

    # -- Peer protocol (called by the hub) ------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        if self._closing:
            return
        if self._outbox.qsize() >= OUTBOX_LIMIT:
            self.terminate(CLOSE_POLICY, None, "client does not read its messages")
            return
        self._outbox.put_nowait(message)

    def terminate(self, code: int, error: str | None, message: str) -> None:
        if self._closing:
            return
        if error is not None:
            self._outbox.put_nowait({"type": "error", "code": error, "message": message})
        self._closing = True
        self._outbox.put_nowait((code, message))

    def add_consumer(self, track_id: str, publisher_id: str, params: ConsumerParams, producer: Producer) -> None:
        if self._sub is None or self.room is None or track_id in self._received:
            return
        mid = str(len(self._slots))
        live = {(s.consumer.codec.payload_type, s.consumer.codec.rtx_payload_type or 0)
                for s in self._slots if s.consumer is not None}
        params = replace(params, mid=mid, codec=self._payload_types.assign(params.codec, live))
        self._slots.append(SubscribeSlot(mid, params.kind, params, publisher_id, track_id))
        self._received[track_id] = _Received(len(self._slots) - 1, params, producer, publisher_id)
        self._renegotiate()

    def refresh_pauses(self) -> None:
        for received in self._received.values():
            if received.consumer is not None and not received.consumer.closed:
                self._apply_care_pause(received)

    def _apply_care_pause(self, received: _Received) -> None:
        assert received.consumer is not None and self.room is not None
        care.apply_pause(received.consumer, self.hub.pause_for(self.room, self.participant_id,
                                                               received.publisher_id, received.params.kind))

    def remove_consumer(self, track_id: str) -> None:
        received = self._received.pop(track_id, None)
        if received is None:
            return
        if received.consumer is not None:
            received.consumer.close()
        slot = self._slots[received.slot_index]
        # Stays in place, inactive, listing the same PTs (they keep one meaning on this connection).
        self._slots[received.slot_index] = SubscribeSlot(slot.mid, slot.kind, codec=received.params.codec)
        self._renegotiate()

    # -- read by the metrics monitor (signalling/metrics.py) ---------------------------------------

    @property
    def packets_delivered(self) -> int:
        """RTP packets forwarded to this participant so far; join latency ends at the first."""
        return sum(r.consumer.packets_sent for r in self._received.values() if r.consumer is not None)

    @property
    def media_transports(self) -> tuple[WebRtcTransport | None, WebRtcTransport | None]:
        """(publish, subscribe) transports, None where there is none."""
        return self._pub, self._sub

    # -- the connection's life ------------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self._write_loop())
        try:
            await self._read_loop()
        finally:
            self._closing = True
            self._cleanup("disconnected")
            self._outbox.put_nowait((CLOSE_NORMAL, ""))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, timeout=5)
            writer.cancel()

    async def _read_loop(self) -> None:
        while not self.ws.closed and not self._closing:
            timeout = self.config.join_timeout if self.claims is None else None
            try:
                msg = await self.ws.receive(timeout=timeout)
            except TimeoutError:
                self.terminate(CLOSE_POLICY, "join_timeout", "no join message in time")
                return
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            if msg.type is WSMsgType.BINARY:
                self._error("malformed_json", "binary frames are not part of the protocol", None)
                continue
            if msg.type is not WSMsgType.TEXT:
                continue
            data: str = msg.data
            if len(data) > MAX_MESSAGE_BYTES or len(data.encode()) > MAX_MESSAGE_BYTES:
                self.terminate(CLOSE_TOO_BIG, "message_too_large", "messages are limited to 64 KiB")
                return
            self._handle_text(data)

    async def _write_loop(self) -> None:
        while True:
            item = await self._outbox.get()
            try:
                if isinstance(item, tuple):
                    await self.ws.close(code=item[0], message=item[1].encode()[:120])
                    return
                await self.ws.send_str(json.dumps(item))
            except (ConnectionError, RuntimeError):
                return

    def _handle_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            self._error("malformed_json", "frame is not valid JSON", None)
            return
        if not isinstance(message, dict):
            self._error("malformed_json", "a message must be a JSON object", None)
            return
        request_id = message.get("id")
        if request_id is not None and not (
            (isinstance(request_id, int) and not isinstance(request_id, bool))
            or (isinstance(request_id, str) and len(request_id) <= 64)
        ):
            self._error("invalid_message", "id must be a string (<= 64 chars) or an integer", None)
            return
        kind = message.get("type")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self._error("unknown_type", "unknown message type", request_id)
            return
        if kind != "join" and self.claims is None:
            self._error("not_joined", "send join first", request_id)
            return
        try:
            reply = handler(self, message)
        except ProtocolError as exc:
            self._error(exc.code, exc.message, request_id)
            if exc.code in JOIN_ERRORS and self.claims is None:
                self.terminate(CLOSE_POLICY, None, exc.code)
            return
        except Exception:
            log.exception("request failed participant=%s type=%s", self.participant_id or "-", kind)
            self._error("internal_error", "the request failed on the server and had no effect", request_id)
            return
        if reply is not None:
            if request_id is not None:
                reply["id"] = request_id
            self.send(reply)

    def _error(self, code: str, message: str, request_id: object) -> None:
        error: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if request_id is not None:
            error["id"] = request_id
        log.info("request refused participant=%s code=%s", self.participant_id or "-", code)
        self.send(error)

    def _cleanup(self, reason: str) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.claims is not None:
            if reason == "left":
                self.hub.leave(self, reason)
            else:  # dropped without `leave`: the participant may come back within the grace period
                self.hub.disconnect(self, reason)
        for published in self._published.values():
            published.producer.close()
        self._published.clear()
        for received in self._received.values():
            if received.consumer is not None:
                received.consumer.close()
        self._received.clear()
        transports, self._pub, self._sub = (self._pub, self._sub), None, None  # our own close is no failure
        for transport in transports:
            if transport is not None:
                transport.close("participant_left")

    def _on_transport_closed(self, which: str, reason: str) -> None:
        if self._closing or (which == "pub" and self._pub is None) or (which == "sub" and self._sub is None):
            return
        log.info("transport closed participant=%s which=%s reason=%s", self.participant_id, which, reason)
        if which == "pub":
            self._pub = None
        else:
            self._sub = None
        self.hub.disconnect(self, "transport_closed")
        self.claims = None
        self.terminate(CLOSE_TRANSPORT, None, "media transport closed")

    def _local(self, transport: WebRtcTransport) -> LocalTransport:
        return LocalTransport(transport.ice_ufrag, transport.ice_pwd, transport.fingerprint,
                              tuple(self.hub.media.candidates))

    # -- requests ---------------------------------------------------------------------------------------

    def on_join(self, message: dict[str, Any]) -> None:
        if self.claims is not None:
            raise ProtocolError("already_joined", "this connection has joined already")
        started = self.hub.media.now()
        token, room_id = message.get("token"), message.get("room_id")
        if not isinstance(token, str) or (room_id is not None and not isinstance(room_id, str)):
            raise ProtocolError("invalid_message", "join needs a string token (and an optional string room_id)")
        try:
            claims = verify_token(token, api_key=self.config.api_key, api_secret=self.config.api_secret,
                                  max_ttl=self.config.token_max_ttl)
        except TokenError as exc:
            raise ProtocolError(exc.code, exc.message) from None
        if room_id is not None and room_id != claims.room_id:
            raise ProtocolError("wrong_room", "the token is for another room")
        self.participant_id = claims.participant_id
        try:
            room = self.hub.join(self, claims, token_id=care.token_id(token))
        except RoomError as exc:
            raise ProtocolError(exc.code, exc.message) from None
        self.claims, self.room = claims, room
        self.join_started = started
        self.hub.join_begun()
        if claims.grants.subscribe:
            self._sub = self.hub.media.create_transport(on_closed=lambda r: self._on_transport_closed("sub", r))
            self.hub.media.connection_of(self._sub).downlink.listener = DownlinkEvents(self, self.hub)
        member = room.members[claims.participant_id]
        reply: dict[str, Any] = {
            "type": "joined",
            "participant": {"id": claims.participant_id, "role": claims.role.value, "name": claims.name,
                            "can_publish": room.can_publish(claims.participant_id),
                            "can_subscribe": claims.grants.subscribe, "state": member.state.value,
                            "audio_muted": member.audio_muted},
            "room": self.hub.room_info(room, claims.participant_id) if room.in_session(claims.participant_id)
            else {"id": room.id, "kind": room.kind.value, "participants": []},  # waiting: nothing about others
        }
        if message.get("id") is not None:
            reply["id"] = message["id"]
        self.send(reply)  # sent here so that it precedes the first subscribe offer
        if self._sub is not None:
            self.hub.subscribe_existing(self, room)
        self._spawn(care.QualityReporter(self.hub, room, self, self._link_stats).run())

    def _link_stats(self) -> LinkStats | None:
        """None until a media transport is up: before that there is nothing to measure."""
        if not any(t is not None and t.state is TransportState.CONNECTED for t in (self._sub, self._pub)):
            return None
        consumers = [r.consumer for r in self._received.values() if r.consumer is not None]
        connection = None
        for transport in (self._sub, self._pub):
            if transport is not None and connection is None:
                with contextlib.suppress(ValueError):
                    connection = self.hub.media.connection_of(transport)
        rtt = connection.rtt_s if connection is not None else None
        audio_only = bool(getattr(getattr(connection, "downlink", None), "audio_only", False))
        return care.link_stats(consumers, rtt, audio_only)

    def on_control(self, message: dict[str, Any]) -> dict[str, Any] | None:
        assert self.room is not None
        try:
            if message["type"] == "end_session":  # the reply goes out before the room closes this connection
                self.room.require_therapist(self.participant_id)
                self.send({"type": "ok", **({"id": message["id"]} if message.get("id") is not None else {})})
            self.hub.control(self, self.room, str(message["type"]), message)
        except RoomError as exc:
            raise ProtocolError(exc.code, exc.message) from None
        return None if message["type"] == "end_session" else {"type": "ok"}

    def on_publish(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.room is not None
        if not self.room.can_publish(self.participant_id):
            raise ProtocolError("permission_denied", "this participant may not publish")
        if not self.room.in_session(self.participant_id):
            raise ProtocolError("not_admitted", "wait until the therapist admits you (event `admitted`)")
        sdp, codec = message.get("sdp"), message.get("video_codec", "VP8")
        if not isinstance(sdp, str) or codec not in ("VP8", "H264"):
            raise ProtocolError("invalid_message", "publish needs sdp (string) and video_codec VP8|H264")
        try:
            offer = parse_publish_offer(sdp, video_codec=codec)
        except SdpError as exc:
            raise ProtocolError("invalid_sdp", str(exc)) from None
        if self._pub_ufrag is not None and offer.transport.ice_ufrag != self._pub_ufrag:
            raise ProtocolError("invalid_sdp", "ICE restart is not supported; reuse the publish connection")
        return self._apply_publish(offer)

    def _apply_publish(self, offer: PublishOffer) -> dict[str, Any]:
        assert self.room is not None
        if self._pub is None:
            self._pub = self.hub.media.create_transport(on_closed=lambda r: self._on_transport_closed("pub", r))
            self._pub.set_remote(ice_ufrag=offer.transport.ice_ufrag, ice_pwd=offer.transport.ice_pwd,
                                 fingerprints=list(offer.transport.fingerprints))
            self._pub_ufrag = offer.transport.ice_ufrag
        active = {s.mid: s for s in offer.sections if s.params is not None}
        for mid in [m for m in self._published if m not in active]:
            gone = self._published.pop(mid)
            self.hub.unpublish(self, self.room, gone.track_id)
        answer = write_publish_answer(offer, self._local(self._pub), session_id=self._session_id)
        tracks = []
        for mid, section in active.items():
            assert section.params is not None
            if mid not in self._published:
                track_id = "tr_" + secrets.token_hex(6)
                producer = self.hub.router(self.room).add_producer(self._pub, section.params,
                                                                   PublishedTrackEvents(self.send, track_id))
                self._published[mid] = _Published(track_id, producer)
                self.hub.publish(self, self.room, track_id, section.kind, bool(section.simulcast_rids), producer)
            tracks.append({"id": self._published[mid].track_id, "mid": mid, "kind": section.kind,
                           "simulcast": bool(section.simulcast_rids)})
        return {"type": "answer", "sdp": answer, "tracks": tracks}

    def on_answer(self, message: dict[str, Any]) -> dict[str, Any]:
        sdp, offer_id = message.get("sdp"), message.get("offer_id")
        if not isinstance(sdp, str) or not isinstance(offer_id, int) or isinstance(offer_id, bool):
            raise ProtocolError("invalid_message", "answer needs sdp (string) and offer_id (integer)")
        if self._outstanding is None or offer_id != self._outstanding or self._sub is None:
            raise ProtocolError("invalid_state", "no such subscribe offer outstanding")
        try:
            answer = parse_subscribe_answer(sdp, [s.mid for s in self._sent_slots])
        except SdpError as exc:
            raise ProtocolError("invalid_sdp", str(exc)) from None
        if not self._sub_remote_set:
            self._sub.set_remote(ice_ufrag=answer.transport.ice_ufrag, ice_pwd=answer.transport.ice_pwd,
                                 fingerprints=list(answer.transport.fingerprints))
            self._sub_remote_set = True
        self._outstanding = None
        assert self.room is not None
        answered = {s.track_id for s in self._sent_slots if s.track_id is not None}
        fresh: list[Consumer] = []
        for track_id, received in self._received.items():
            if received.consumer is None and track_id in answered and not received.producer.closed:
                consumer = self.hub.router(self.room).add_consumer(self._sub, received.producer, received.params,
                                                                 TrackEvents(self.send, track_id))
                received.consumer = consumer
                self._apply_care_pause(received)  # before the first packet can be forwarded
                if received.pinned is not None:
                    consumer.pin_layer(received.pinned)
                if received.preference != (None, True):
                    size, visible = received.preference
                    consumer.set_preference(size, visible=visible, now=self.hub.media.now())
                if received.params.kind is MediaKind.VIDEO:
                    fresh.append(consumer)
        if self._sub.state is TransportState.CONNECTED:
            if self._dirty:
                self._renegotiate()
        else:
            self._spawn(self._after_connected())
        if fresh:
            self._spawn(self._prime_keyframes(fresh))
        return {"type": "ok"}

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait_connected(self) -> bool:
        for _ in range(300):  # up to 15 s for ICE and DTLS
            transport = self._sub
            if transport is None or transport.state is TransportState.CLOSED:
                return False
            if transport.state is TransportState.CONNECTED:
                return True
            await asyncio.sleep(0.05)
        return False

    async def _after_connected(self) -> None:
        """Hold further subscribe offers until the first one connected: renegotiating while ICE/DTLS are
        still being set up trips clients (aiortc then never starts the receivers of the later offer)."""
        if await self._wait_connected() and self._dirty and self._outstanding is None:
            self._renegotiate()

    async def _prime_keyframes(self, consumers: list[Consumer]) -> None:
        """Ask for a keyframe once the subscriber can take it. The request made when the consumer was
        created may reach the publisher before the subscriber is connected, and a decoder that starts on
        delta frames shows nothing until the next keyframe (aiortc does not send PLI on decode errors)."""
        if await self._wait_connected():
            now = self.hub.media.now()
            for consumer in consumers:
                if not consumer.closed:
                    consumer.request_keyframe(now=now)

    def on_pin_layer(self, message: dict[str, Any]) -> dict[str, Any]:
        track_id, layer = message.get("track_id"), message.get("layer")
        if not isinstance(track_id, str) or not (
            layer is None or (isinstance(layer, int) and not isinstance(layer, bool) and 0 <= layer <= 2)
        ):
            raise ProtocolError("invalid_message", "pin_layer needs track_id and layer 0, 1, 2 or null")
        received = self._received.get(track_id)
        if received is None:
            raise ProtocolError("unknown_track", "you do not receive this track")
        received.pinned = layer
        if received.consumer is not None:
            received.consumer.pin_layer(layer, now=self.hub.media.now())
        return {"type": "ok"}

    def on_video_preference(self, message: dict[str, Any]) -> dict[str, Any]:
        """Adaptive stream: the size the subscriber renders a video at, or that it does not show it."""
        track_id, enabled = message.get("track_id"), message.get("enabled", True)
        width, height = message.get("max_width", 0), message.get("max_height", 0)
        if not isinstance(track_id, str) or not isinstance(enabled, bool) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_PREFERRED_PIXELS
            for v in (width, height)
        ):
            raise ProtocolError("invalid_message", "video_preference needs track_id, enabled (boolean) and "
                                f"max_width/max_height (integers 0-{MAX_PREFERRED_PIXELS})")
        received = self._received.get(track_id)
        if received is None:
            raise ProtocolError("unknown_track", "you do not receive this track")
        if received.params.kind is not MediaKind.VIDEO:
            raise ProtocolError("invalid_message", "video_preference applies to video tracks")
        visible = enabled and (width, height) != (0, 0)
        size = (width, height) if visible else None
        received.preference = (size, visible)
        if received.consumer is not None:
            received.consumer.set_preference(size, visible=visible, now=self.hub.media.now())
        return {"type": "ok"}

    def on_leave(self, message: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"type": "ok"}
        if message.get("id") is not None:
            reply["id"] = message["id"]
        self.send(reply)
        self._cleanup("left")
        self.claims = None
        self.terminate(CLOSE_NORMAL, None, "left")

    def on_ping(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"type": "pong"}

    # -- subscribe renegotiation ------------------------------------------------------------------------

    def _renegotiate(self) -> None:
        if self._sub is None or self._closing:
            return
        if self._outstanding is not None or (
            self._sub_remote_set and self._sub.state is not TransportState.CONNECTED
        ):
            self._dirty = True  # folded into the next offer once this one is answered and connected
            return
        if not self._slots:
            return
        self._dirty = False
        self._offer_id += 1
        self._outstanding = self._offer_id
        self._sent_slots = list(self._slots)
        sdp = write_subscribe_offer(self._sent_slots, self._local(self._sub), session_id=self._session_id,
                                    version=self._offer_id)
        tracks = [{"mid": s.mid, "track_id": s.track_id, "participant_id": s.stream_id, "kind": s.kind.value}
                  for s in self._sent_slots]
        self.send({"type": "offer", "offer_id": self._offer_id, "sdp": sdp, "tracks": tracks})


_HANDLERS: dict[str, Any] = {
    "join": Session.on_join,
    "publish": Session.on_publish,
    "answer": Session.on_answer,
    "pin_layer": Session.on_pin_layer,
    "video_preference": Session.on_video_preference,
    "leave": Session.on_leave,
    "ping": Session.on_ping,
    **{control: Session.on_control for control in care.CONTROLS},
}


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=HARD_FRAME_LIMIT, heartbeat=30.0)
    await ws.prepare(request)
    session = Session(ws, request.app[keys.HUB], request.app[keys.CONFIG])
    await session.run()
    return ws
