// Confidant browser SDK: one ES module, no build step, no dependencies. See docs/js-sdk.md and docs/protocol.md.
//
//   import { connect } from '/static/confidant.js';
//   const room = await connect('wss://sfu.example/ws', token);
//   room.addEventListener('track', (e) => room.attach(e.detail.trackId, videoElement));
//   await room.publish();            // camera + microphone, video as simulcast q/h/f
//   console.log(await room.getStats());
//   await room.leave();

/** Simulcast layers, lowest first (the order the protocol requires in a=simulcast). */
export const LAYERS = Object.freeze([
  Object.freeze({ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
  Object.freeze({ rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 }),
]);

const GATHER_TIMEOUT_MS = 2000; // host candidates only (iceServers: []) gather in a few ms
const REQUEST_TIMEOUT_MS = 15000;
const PING_INTERVAL_MS = 20000;
const PREFERENCE_DEBOUNCE_MS = 500; // adaptive stream: a resize or scroll settles before we tell the server

/** A request the server refused; `code` is the protocol's error code (docs/protocol.md section 4.1). */
export class ConfidantError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = 'ConfidantError';
    this.code = code;
  }
}

/** Chrome rejects an SDP whose last line lacks its CRLF ("Invalid SDP line"). */
function withFinalCrlf(sdp) {
  return sdp.endsWith('\r\n') ? sdp : sdp.replace(/\r?\n?$/, '\r\n');
}

function waitForGathering(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener('icegatheringstatechange', check);
      clearTimeout(timer);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const timer = setTimeout(done, GATHER_TIMEOUT_MS);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** The size in device pixels a <video> needs to show its picture unscaled: with object-fit cover the
 *  picture overflows the element on one axis, with contain it fits inside it. */
function renderedSize(element) {
  const dpr = globalThis.devicePixelRatio || 1;
  const w = element.clientWidth * dpr;
  const h = element.clientHeight * dpr;
  const vw = element.videoWidth;
  const vh = element.videoHeight;
  if (!vw || !vh) return [Math.ceil(w), Math.ceil(h)];
  const fit = globalThis.getComputedStyle?.(element).objectFit ?? 'contain';
  const scale = fit === 'cover' ? Math.max(w / vw, h / vh) : fit === 'fill' ? null : Math.min(w / vw, h / vh);
  if (scale === null) return [Math.ceil(w), Math.ceil(h)];
  return [Math.ceil(vw * scale), Math.ceil(vh * scale)];
}

function layerIndex(layer) {
  if (layer === null || layer === undefined || layer === 'auto') return null;
  if (typeof layer === 'number' && Number.isInteger(layer) && layer >= 0 && layer < LAYERS.length) return layer;
  const i = LAYERS.findIndex((l) => l.rid === layer);
  if (i < 0) throw new RangeError(`unknown layer ${layer}: use 0-2, 'q', 'h', 'f' or null`);
  return i;
}

/**
 * Connect to a Confidant room: opens the WebSocket, sends `join` and resolves once joined.
 * options: { iceServers = [], roomId, WebSocket = globalThis.WebSocket,
 *   adaptiveStream = true (tell the server the size each attached remote video is shown at, and pause
 *     videos that are not visible: docs/js-sdk.md),
 *   dynacast = true (stop encoding simulcast layers the server says nobody wants) }
 */
export async function connect(url, token, options = {}) {
  const room = new Room(url, token, options);
  await room._join();
  return room;
}

/**
 * One participant's session. Events (all CustomEvent, data in `detail`):
 *   participantjoined {participant}, participantleft {participantId, reason},
 *   trackpublished {participantId, track}, trackunpublished {participantId, trackId},
 *   track {trackId, participantId, kind, track, stream}   a remote track can now be attached,
 *   trackended {trackId, participantId, kind},
 *   trackpaused {trackId, reason}, trackresumed {trackId}, layerchanged {trackId, layer},
 *   connectionstatechange {pc: 'publish'|'subscribe', state}, roomended {reason},
 *   disconnected {code, reason}, error {error}
 */
export class Room extends EventTarget {
  constructor(url, token, options = {}) {
    super();
    this.url = new URL(url, globalThis.location?.href).href.replace(/^http/, 'ws');
    this.token = token;
    this.options = { iceServers: [], adaptiveStream: true, dynacast: true, ...options };
    this.localParticipant = null;
    this.roomId = null;
    this.kind = null;
    /** @type {Map<string, {id, role, name, tracks: Map<string, object>}>} other participants by id */
    this.participants = new Map();
    /** @type {Map<string, {trackId, participantId, kind, mid, track, stream, paused, pausedReason, layer}>} */
    this.remoteTracks = new Map();
    this.localStream = null;
    this.publishedTracks = []; // [{id, mid, kind, simulcast}]
    this.publishPc = null;
    this.subscribePc = null;
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map();
    this._midToTrack = new Map(); // subscribe connection: mid -> {trackId, participantId, kind}
    this._offers = Promise.resolve(); // subscribe offers are handled one at a time
    this._closed = false;
    this._ping = null;
    this._ownStream = false;
    this._watched = new Map(); // adaptive stream: trackId -> watcher of the element it is attached to
    this._layerUpdates = Promise.resolve(); // dynacast: setParameters calls one at a time
    /** dynacast: the simulcast layers (rids) the server last asked us to send, by published track id */
    this.wantedLayers = new Map();
    // Care sessions (docs/protocol.md section 6).
    /** 'waiting' | 'active' | 'on_hold' (ours); see `waiting`, `checkIn`, `quality` for the rest */
    this.state = null;
    /** @type {Array<{id, role, name}>} clients in the waiting room (therapists only) */
    this.waiting = [];
    this.locked = false;
    /** the client in a private check-in with the therapist, or null */
    this.checkIn = null;
    /** our own connection quality: {quality: 'good'|'fair'|'poor', loss, jitter_ms, rtt_ms, audio_only} */
    this.quality = null;
    /** @type {Map<string, object>} everyone's quality by participant id (therapists only) */
    this.participantQuality = new Map();
  }

  // ---- connection and requests -------------------------------------------------------------------------

  async _join() {
    const WS = this.options.WebSocket ?? globalThis.WebSocket;
    const ws = this._ws = new WS(this.url);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new ConfidantError('connection_failed', `cannot open ${this.url}`));
    });
    ws.onerror = null;
    ws.onmessage = (ev) => this._onMessage(ev.data);
    ws.onclose = (ev) => this._onClose(ev.code, ev.reason);
    const msg = { token: this.token };
    if (this.options.roomId) msg.room_id = this.options.roomId;
    const joined = await this._request('join', msg);
    this.localParticipant = joined.participant;
    this.roomId = joined.room.id;
    this.kind = joined.room.kind;
    this.state = joined.participant.state ?? 'active';
    this._applyRoom(joined.room);
    if (joined.participant.can_subscribe) this._createSubscribePc();
    this._ping = setInterval(() => this._request('ping').catch(() => {}), PING_INTERVAL_MS);
  }

  _applyRoom(room) {
    for (const p of room.participants ?? []) this._addParticipant(p);
    this.waiting = room.waiting ?? this.waiting;
    this.locked = room.locked ?? false;
    this.checkIn = room.check_in ?? null;
    for (const q of room.quality ?? []) this.participantQuality.set(q.participant_id, q);
  }

  _request(type, body = {}) {
    if (!this._ws || this._ws.readyState !== 1) {
      return Promise.reject(new ConfidantError('not_connected', 'the WebSocket is not open'));
    }
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new ConfidantError('timeout', `no reply to ${type}`));
      }, REQUEST_TIMEOUT_MS);
      this._pending.set(id, { resolve, reject, timer });
      this._ws.send(JSON.stringify({ type, id, ...body }));
    });
  }

  _emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  _onMessage(data) {
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    if (msg.id !== undefined && this._pending.has(msg.id)) {
      const { resolve, reject, timer } = this._pending.get(msg.id);
      this._pending.delete(msg.id);
      clearTimeout(timer);
      if (msg.type === 'error') reject(new ConfidantError(msg.code, msg.message));
      else resolve(msg);
      return;
    }
    switch (msg.type) {
      case 'offer':
        this._offers = this._offers.then(() => this._onSubscribeOffer(msg)).catch((error) => this._emit('error', { error }));
        break;
      case 'participant_joined':
        this._addParticipant(msg.participant);
        this._emit('participantjoined', { participant: this.participants.get(msg.participant.id) });
        break;
      case 'participant_left':
        this.participants.delete(msg.participant_id);
        this._emit('participantleft', { participantId: msg.participant_id, reason: msg.reason });
        break;
      case 'track_published': {
        const p = this.participants.get(msg.participant_id);
        if (p) p.tracks.set(msg.track.id, msg.track);
        this._emit('trackpublished', { participantId: msg.participant_id, track: msg.track });
        break;
      }
      case 'track_unpublished': {
        this.participants.get(msg.participant_id)?.tracks.delete(msg.track_id);
        this._emit('trackunpublished', { participantId: msg.participant_id, trackId: msg.track_id });
        break;
      }
      // The media plane pauses a subscriber's video (e.g. audio-only fallback) and says why.
      case 'track_paused':
      case 'track_resumed': {
        const paused = msg.type === 'track_paused';
        const t = this.remoteTracks.get(msg.track_id);
        if (t) { t.paused = paused; t.pausedReason = paused ? (msg.reason ?? null) : null; }
        this._emit(paused ? 'trackpaused' : 'trackresumed', { trackId: msg.track_id, reason: msg.reason ?? null });
        break;
      }
      case 'layer_changed': {
        const t = this.remoteTracks.get(msg.track_id);
        if (t) t.layer = msg.layer;
        this._emit('layerchanged', { trackId: msg.track_id, layer: msg.layer });
        break;
      }
      case 'layers_wanted': // dynacast (docs/protocol.md): encode only the layers some subscriber wants
        this.wantedLayers.set(msg.track_id, msg.layers);
        if (this.options.dynacast) {
          this._layerUpdates = this._layerUpdates.then(() => this._applyWantedLayers(msg)).catch((error) => this._emit('error', { error }));
        }
        this._emit('layerswanted', { trackId: msg.track_id, layers: msg.layers });
        break;
      case 'room_ended':
        this._emit('roomended', { reason: msg.reason });
        break;
      case 'waiting_room':
        this.waiting = msg.waiting;
        this._emit('waitingroom', { waiting: msg.waiting });
        break;
      case 'admitted':
        this.state = 'active';
        this._applyRoom(msg.room);
        this._emit('admitted', { participants: [...this.participants.values()] });
        break;
      case 'declined':
      case 'removed':
        this._emit(msg.type, { message: msg.message });
        break;
      case 'room_locked':
        this.locked = msg.locked;
        this._emit('roomlocked', { locked: msg.locked });
        break;
      case 'participant_muted': {
        const p = this.participants.get(msg.participant_id);
        if (p) p.audioMuted = msg.muted;
        if (msg.participant_id === this.localParticipant?.id) this.localParticipant.audio_muted = msg.muted;
        this._emit('participantmuted', { participantId: msg.participant_id, muted: msg.muted,
          local: msg.participant_id === this.localParticipant?.id });
        break;
      }
      case 'check_in':
        this.checkIn = msg.active ? msg.participant_id : null;
        this._emit('checkin', { active: msg.active, participantId: msg.participant_id, therapistId: msg.therapist_id });
        break;
      case 'on_hold':
        this.state = msg.active ? 'on_hold' : 'active';
        this._emit('onhold', { active: msg.active });
        break;
      case 'participant_state': {
        const p = this.participants.get(msg.participant_id);
        if (p) p.state = msg.state;
        this._emit('participantstate', { participantId: msg.participant_id, state: msg.state });
        break;
      }
      case 'quality':
        this.quality = msg;
        this._emit('quality', msg);
        break;
      case 'participant_audio_only': // sent by adaptation to therapists (docs/protocol.md 4.10)
        this._emit('participantaudioonly', { participantId: msg.participant_id, active: msg.active, reason: msg.reason });
        break;
      case 'participant_quality':
        this.participantQuality.set(msg.participant_id, msg);
        this._emit('participantquality', { participantId: msg.participant_id, ...msg });
        break;
      case 'error':
        this._emit('error', { error: new ConfidantError(msg.code, msg.message) });
        break;
      default:
        break; // unknown server messages are ignored so newer servers keep working
    }
  }

  _onClose(code, reason) {
    clearInterval(this._ping);
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(new ConfidantError('disconnected', `WebSocket closed (${code})`));
    }
    this._pending.clear();
    const wasOpen = !this._closed;
    this._teardown();
    if (wasOpen) this._emit('disconnected', { code, reason });
  }

  _addParticipant(p) {
    const tracks = new Map((p.tracks ?? []).map((t) => [t.id, t]));
    this.participants.set(p.id, { id: p.id, role: p.role, name: p.name ?? null, tracks,
      state: p.state ?? 'active', audioMuted: p.audio_muted ?? false });
  }

  _watchPc(pc, which) {
    pc.addEventListener('connectionstatechange', () => {
      this._emit('connectionstatechange', { pc: which, state: pc.connectionState });
    });
  }

  // ---- publishing ---------------------------------------------------------------------------------------

  /**
   * Publish camera and microphone. options: { audio = true, video = true (or constraints), stream,
   *   simulcast = true, videoCodec = 'VP8' }. Resolves with [{id, mid, kind, simulcast}].
   */
  async publish(options = {}) {
    if (!this.localParticipant?.can_publish) throw new ConfidantError('permission_denied', 'this role cannot publish');
    if (this.publishPc) throw new ConfidantError('invalid_state', 'already published');
    const { audio = true, video = true, simulcast = true, videoCodec = 'VP8' } = options;
    let stream = options.stream;
    if (!stream) {
      const videoConstraints = video === true ? { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } } : video;
      stream = await navigator.mediaDevices.getUserMedia({ audio, video: videoConstraints });
    }
    this.localStream = stream;
    this._ownStream = !options.stream;
    const pc = this.publishPc = new RTCPeerConnection({ iceServers: this.options.iceServers });
    this._watchPc(pc, 'publish');
    const audioTrack = stream.getAudioTracks()[0];
    const videoTrack = stream.getVideoTracks()[0];
    if (audioTrack) pc.addTransceiver(audioTrack, { direction: 'sendonly', streams: [stream] });
    if (videoTrack) {
      const init = { direction: 'sendonly', streams: [stream] };
      if (simulcast) init.sendEncodings = LAYERS.map((l) => ({ ...l }));
      const tr = pc.addTransceiver(videoTrack, init);
      this._preferCodec(tr, videoCodec);
    }
    await pc.setLocalDescription(await pc.createOffer());
    await waitForGathering(pc);
    const reply = await this._request('publish', { sdp: pc.localDescription.sdp, video_codec: videoCodec });
    await pc.setRemoteDescription({ type: 'answer', sdp: withFinalCrlf(reply.sdp) });
    this.publishedTracks = reply.tracks ?? [];
    return this.publishedTracks;
  }

  async _applyWantedLayers(msg) {
    const published = this.publishedTracks.find((t) => t.id === msg.track_id);
    const tr = published && this.publishPc?.getTransceivers().find((x) => x.mid === published.mid);
    const sender = tr?.sender;
    if (!sender) return;
    const params = sender.getParameters();
    if (!params.encodings || params.encodings.length < 2) return;
    const wanted = new Set(msg.layers);
    let changed = false;
    params.encodings.forEach((enc, i) => {
      const active = wanted.has(enc.rid ?? i) || wanted.has(i);
      if (enc.active !== active) { enc.active = active; changed = true; }
    });
    // A re-activated encoding starts with a keyframe in libwebrtc; the server asks for one as well.
    if (changed) await sender.setParameters(params);
  }

  _preferCodec(transceiver, name) {
    const caps = globalThis.RTCRtpSender?.getCapabilities?.('video');
    if (!caps || !transceiver.setCodecPreferences) return;
    const want = `video/${name}`.toLowerCase();
    const first = caps.codecs.filter((c) => c.mimeType.toLowerCase() === want);
    const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== want);
    if (first.length) transceiver.setCodecPreferences([...first, ...rest]);
  }

  /** Stop sending: every published m-section becomes inactive and its track is unpublished. */
  async unpublish() {
    if (!this.publishPc) return;
    for (const tr of this.publishPc.getTransceivers()) tr.direction = 'inactive';
    await this.publishPc.setLocalDescription(await this.publishPc.createOffer());
    const reply = await this._request('publish', { sdp: this.publishPc.localDescription.sdp });
    await this.publishPc.setRemoteDescription({ type: 'answer', sdp: withFinalCrlf(reply.sdp) });
    this.publishedTracks = [];
  }

  /** Mute or unmute the local microphone or camera without renegotiating. */
  setEnabled(kind, enabled) {
    for (const t of this.localStream?.getTracks() ?? []) if (t.kind === kind) t.enabled = enabled;
  }

  // ---- subscribing --------------------------------------------------------------------------------------

  _createSubscribePc() {
    const pc = this.subscribePc = new RTCPeerConnection({ iceServers: this.options.iceServers });
    this._watchPc(pc, 'subscribe');
    pc.addEventListener('track', (ev) => {
      const mid = ev.transceiver?.mid;
      const info = this._midToTrack.get(mid);
      if (!info || !info.trackId) return;
      this._announceTrack(info, ev.track, mid);
    });
  }

  _announceTrack(info, track, mid) {
    const old = this.remoteTracks.get(info.trackId);
    if (old && old.track === track) return;
    const stream = new MediaStream([track]);
    const entry = {
      trackId: info.trackId, participantId: info.participantId, kind: info.kind, mid, track, stream,
      paused: false, pausedReason: null, layer: null,
    };
    this.remoteTracks.set(info.trackId, entry);
    this._emit('track', { trackId: entry.trackId, participantId: entry.participantId, kind: entry.kind, track, stream });
  }

  async _onSubscribeOffer(msg) {
    const pc = this.subscribePc;
    if (!pc) return;
    const ended = [];
    for (const t of msg.tracks ?? []) {
      const prev = this._midToTrack.get(t.mid);
      if (prev?.trackId && prev.trackId !== t.track_id) ended.push(prev);
      this._midToTrack.set(t.mid, { trackId: t.track_id, participantId: t.participant_id, kind: t.kind });
    }
    await pc.setRemoteDescription({ type: 'offer', sdp: withFinalCrlf(msg.sdp) });
    await pc.setLocalDescription(await pc.createAnswer());
    // No waiting for candidates: Confidant is ICE-lite and learns our address from our checks, while
    // Chrome (DTLS client here) starts the handshake at once, so the fingerprint must reach it first.
    await this._request('answer', { offer_id: msg.offer_id, sdp: pc.localDescription.sdp });
    // Tracks on m-sections that were already negotiated fire no new `track` event: announce them here.
    for (const tr of pc.getTransceivers()) {
      const info = this._midToTrack.get(tr.mid);
      if (info?.trackId && tr.receiver.track && !this.remoteTracks.has(info.trackId)) {
        this._announceTrack(info, tr.receiver.track, tr.mid);
      }
    }
    for (const prev of ended) {
      this.detach(prev.trackId);
      this.remoteTracks.delete(prev.trackId);
      this._emit('trackended', { trackId: prev.trackId, participantId: prev.participantId, kind: prev.kind });
    }
  }

  /** Attach a remote track (by id) or any MediaStreamTrack to a <video>/<audio> element. */
  attach(trackOrId, element) {
    const entry = typeof trackOrId === 'string' ? this.remoteTracks.get(trackOrId) : null;
    const track = entry ? entry.track : trackOrId;
    if (!track) throw new ConfidantError('unknown_track', `no remote track ${trackOrId}`);
    element.srcObject = entry ? entry.stream : new MediaStream([track]);
    element.autoplay = true;
    element.playsInline = true;
    element.play?.().catch(() => {}); // autoplay policy: the app may need a user gesture for audio
    if (entry?.kind === 'video' && this.options.adaptiveStream) this._watch(entry.trackId, element);
    return element;
  }

  /** Stop adaptive stream for a remote video (e.g. before the app moves it to another element). */
  detach(trackId) {
    this._watched.get(trackId)?.stop();
    this._watched.delete(trackId);
  }

  // Adaptive stream: watch the element a remote video is shown in and tell the server the size it needs
  // (device pixels, as the video is scaled into the element) or that it is not visible at all.
  _watch(trackId, element) {
    this.detach(trackId);
    let timer = null;
    let last = null;
    let intersecting = true;
    const measure = () => {
      timer = null;
      if (this._closed || !this.remoteTracks.has(trackId)) return;
      const visible = intersecting && globalThis.document?.visibilityState !== 'hidden'
        && element.isConnected && element.clientWidth > 0 && element.clientHeight > 0;
      let body = { track_id: trackId, enabled: false, max_width: 0, max_height: 0 };
      if (visible) {
        const [w, h] = renderedSize(element);
        body = { track_id: trackId, enabled: true, max_width: w, max_height: h };
      }
      const key = JSON.stringify(body);
      if (key === last) return;
      last = key;
      this._request('video_preference', body).catch(() => { last = null; });
    };
    const schedule = () => { if (timer === null) timer = setTimeout(measure, PREFERENCE_DEBOUNCE_MS); };
    const ro = globalThis.ResizeObserver ? new ResizeObserver(schedule) : null;
    ro?.observe(element);
    const io = globalThis.IntersectionObserver ? new IntersectionObserver((entries) => {
      intersecting = entries[entries.length - 1].isIntersecting;
      schedule();
    }) : null;
    io?.observe(element);
    const onVisibility = () => schedule();
    globalThis.document?.addEventListener('visibilitychange', onVisibility);
    element.addEventListener('resize', schedule); // the video's own size changed (object-fit scaling)
    schedule();
    this._watched.set(trackId, {
      stop: () => {
        clearTimeout(timer);
        ro?.disconnect();
        io?.disconnect();
        globalThis.document?.removeEventListener('visibilitychange', onVisibility);
        element.removeEventListener('resize', schedule);
      },
    });
  }

  /** Pin a received simulcast video track to a layer (0-2 or 'q'/'h'/'f'); null returns to automatic. */
  // ---- care sessions: therapist controls (docs/js-sdk.md); others get a `permission_denied` error --------

  /** Let a waiting client into the session. */
  admit(participantId) { return this._request('admit', { participant_id: participantId }); }
  /** Turn a waiting client away; they are told and disconnected. */
  decline(participantId) { return this._request('decline', { participant_id: participantId }); }
  /** Disconnect a participant; their token cannot join again. */
  remove(participantId) { return this._request('remove', { participant_id: participantId }); }
  lockRoom() { return this._request('lock_room'); }
  unlockRoom() { return this._request('unlock_room'); }
  /** Stop (or with `muted = false` restore) forwarding a participant's audio, at the server. */
  mute(participantId, muted = true) { return this._request('mute', { participant_id: participantId, muted }); }
  /** Only the therapist and this client hear and see each other; everyone else is on hold. */
  startCheckIn(participantId) { return this._request('start_check_in', { participant_id: participantId }); }
  endCheckIn() { return this._request('end_check_in'); }
  /** End the session for everyone. */
  endSession() { return this._request('end_session'); }

  async pinLayer(trackId, layer) {
    const index = layerIndex(layer);
    await this._request('pin_layer', { track_id: trackId, layer: index });
    const t = this.remoteTracks.get(trackId);
    if (t) t.layer = index;
  }

  // ---- statistics ---------------------------------------------------------------------------------------

  /**
   * Summaries: { remote: [per remote track], local: [per outbound encoding], timestamp }.
   * Remote video: bytesReceived, packetsReceived, packetsLost, framesDecoded, framesPerSecond, frameWidth,
   * frameHeight, freezeCount, totalFreezesDuration, keyFramesDecoded; audio: totalSamplesReceived,
   * concealedSamples; both: paused, pausedReason, layer (the pinned one), jitter.
   */
  async getStats() {
    const remote = [];
    if (this.subscribePc) {
      const report = await this.subscribePc.getStats();
      const byMid = new Map();
      report.forEach((s) => { if (s.type === 'inbound-rtp' && s.mid !== undefined) byMid.set(s.mid, s); });
      for (const t of this.remoteTracks.values()) {
        const s = byMid.get(t.mid) ?? {};
        const row = {
          trackId: t.trackId, participantId: t.participantId, kind: t.kind, mid: t.mid,
          bytesReceived: s.bytesReceived ?? 0, packetsReceived: s.packetsReceived ?? 0,
          packetsLost: s.packetsLost ?? 0, jitter: s.jitter ?? null,
          paused: t.paused, pausedReason: t.pausedReason, layer: t.layer,
        };
        if (t.kind === 'video') {
          Object.assign(row, {
            framesDecoded: s.framesDecoded ?? 0, framesPerSecond: s.framesPerSecond ?? 0,
            frameWidth: s.frameWidth ?? 0, frameHeight: s.frameHeight ?? 0,
            keyFramesDecoded: s.keyFramesDecoded ?? 0, freezeCount: s.freezeCount ?? 0,
            totalFreezesDuration: s.totalFreezesDuration ?? 0, framesDropped: s.framesDropped ?? 0,
            pliCount: s.pliCount ?? 0, nackCount: s.nackCount ?? 0, decoderImplementation: s.decoderImplementation ?? null,
          });
        } else {
          Object.assign(row, {
            totalSamplesReceived: s.totalSamplesReceived ?? 0, concealedSamples: s.concealedSamples ?? 0,
            audioLevel: s.audioLevel ?? 0,
          });
        }
        remote.push(row);
      }
    }
    const local = [];
    if (this.publishPc) {
      const report = await this.publishPc.getStats();
      report.forEach((s) => {
        if (s.type !== 'outbound-rtp') return;
        local.push({
          kind: s.kind, rid: s.rid ?? null, ssrc: s.ssrc, bytesSent: s.bytesSent ?? 0, packetsSent: s.packetsSent ?? 0,
          framesEncoded: s.framesEncoded ?? 0, frameWidth: s.frameWidth ?? 0, frameHeight: s.frameHeight ?? 0,
          framesPerSecond: s.framesPerSecond ?? 0, qualityLimitationReason: s.qualityLimitationReason ?? null,
          active: s.active ?? true,
        });
      });
    }
    return { remote, local, timestamp: Date.now() };
  }

  // ---- leaving ------------------------------------------------------------------------------------------

  /** Leave the room: tells the server, closes both peer connections and stops the camera and microphone
   *  (unless the app passed its own `stream` to publish()). */
  async leave() {
    if (this._closed) return;
    try {
      await this._request('leave');
    } catch {
      // already gone: the teardown below is all that is left to do
    }
    this._teardown();
    this._ws?.close(1000);
  }

  _teardown() {
    if (this._closed) return;
    this._closed = true;
    clearInterval(this._ping);
    this.publishPc?.close();
    this.subscribePc?.close();
    if (this._ownStream) for (const t of this.localStream?.getTracks() ?? []) t.stop();
    for (const w of this._watched.values()) w.stop();
    this._watched.clear();
    for (const t of this.remoteTracks.values()) this._emit('trackended', { trackId: t.trackId, participantId: t.participantId, kind: t.kind });
    this.remoteTracks.clear();
  }
}
