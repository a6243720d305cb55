// The development demo page: join a room with a demo token (minted by the server in dev mode only) or with
// ?token=...; publish camera and microphone; show every participant in a grid with an audio-only badge.
// Care sessions: clients wait until admitted; therapists see the waiting list and the controls (admit, decline,
// remove, mute, check-in, lock, end); everyone sees observers, holds and connection quality.
import { connect } from '/static/confidant.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const tiles = new Map(); // participant id -> {el, video, audio: Map<trackId, HTMLAudioElement>, videoTrackId}
let room = null;
let statsTimer = null;

function setStatus(text, isError = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', isError);
}

function initials(name) {
  return (name || '?').split(/\s+/).map((w) => w[0]).join('').slice(0, 2).toUpperCase();
}

function tileFor(id, { name, role, local = false }) {
  let t = tiles.get(id);
  if (t) return t;
  const el = document.createElement('section');
  el.className = 'tile no-video' + (local ? ' local' : '');
  el.dataset.participant = id;
  el.innerHTML = '<video autoplay playsinline muted></video><div class="avatar"></div>' +
    '<div class="label"><span class="name"></span><span class="role"></span></div>' +
    '<div class="badge" title="Receiving audio only">audio only</div><div class="stats"></div>' +
    '<span class="quality" data-quality="" title="Connection quality"></span><div class="controls"></div>';
  el.querySelector('.avatar').textContent = initials(name);
  el.querySelector('.name').textContent = (name || id) + (local ? ' (you)' : '');
  el.querySelector('.role').textContent = role || '';
  $('grid').appendChild(el);
  t = { el, video: el.querySelector('video'), audio: new Map(), videoTrackId: null, local };
  tiles.set(id, t);
  if (!local && room?.localParticipant?.role === 'therapist' && role !== 'therapist') addControls(t, id, role);
  const q = room?.participantQuality.get(id);
  if (q) el.querySelector('.quality').dataset.quality = q.quality;
  refreshCare();
  return t;
}

function removeTile(id) {
  const t = tiles.get(id);
  if (!t) return;
  for (const a of t.audio.values()) a.remove();
  t.el.remove();
  tiles.delete(id);
}

/** A participant is audio-only when no video reaches us: none published, or the server paused it. */
function refreshBadge(id) {
  const t = tiles.get(id);
  if (!t || t.local) return;
  const rt = t.videoTrackId ? room?.remoteTracks.get(t.videoTrackId) : null;
  const hasVideo = Boolean(rt) && !rt.paused;
  t.el.classList.toggle('no-video', !hasVideo);
  t.el.classList.toggle('audio-only', !hasVideo && t.audio.size > 0);
  t.el.querySelector('.badge').title = rt?.paused ? `Video paused: ${rt.pausedReason || 'by the server'}` : 'Receiving audio only';
}

// ---- care sessions -------------------------------------------------------------------------------

function button(text, cls, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = cls;
  b.textContent = text;
  b.addEventListener('click', () => onClick(b).catch((err) => setStatus(err.message, true)));
  return b;
}

function addControls(t, id, role) {
  const box = t.el.querySelector('.controls');
  box.append(button('Mute', 'ctl-mute', async (b) => {
    const muted = b.textContent === 'Mute';
    await room.mute(id, muted);
  }));
  if (role === 'client') box.append(button('Check-in', 'ctl-checkin', () => room.startCheckIn(id)));
  box.append(button('Remove', 'ctl-remove', () => room.remove(id)));
}

function renderWaiting() {
  const list = $('waiting-list');
  list.textContent = '';
  for (const w of room?.waiting ?? []) {
    const li = document.createElement('li');
    li.dataset.waiting = w.id;
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = w.name || w.id;
    li.append(name, button('Admit', 'admit', () => room.admit(w.id)), button('Decline', 'decline', () => room.decline(w.id)));
    list.append(li);
  }
  $('waiting-empty').hidden = (room?.waiting ?? []).length > 0;
}

/** Banners that depend on the room: observers present, on hold, check-in under way, lock state. */
function refreshCare() {
  if (!room) return;
  const observers = [...room.participants.values()].filter((p) => p.role === 'observer').map((p) => p.name || p.id);
  if (room.localParticipant?.role === 'observer') observers.unshift(`${room.localParticipant.name || 'you'} (you)`);
  $('observers').hidden = observers.length === 0;
  $('observers').textContent = `Observed by: ${observers.join(', ')}`;
  $('hold').hidden = room.state !== 'on_hold';
  const therapist = room.localParticipant?.role === 'therapist';
  $('checkin').hidden = !room.checkIn || room.state === 'on_hold';
  const who = room.checkIn === room.localParticipant?.id ? 'you' : (room.participants.get(room.checkIn)?.name || room.checkIn);
  $('checkin-text').textContent = `Private check-in with ${who}.`;
  $('end-checkin').hidden = !therapist;
  $('lock').textContent = room.locked ? 'Unlock room' : 'Lock room';
  for (const [id, t] of tiles) {
    const p = room.participants.get(id);
    t.el.classList.toggle('reconnecting', p?.state === 'reconnecting');
    t.el.classList.toggle('on-hold', p?.state === 'on_hold');
    const mute = t.el.querySelector('.ctl-mute');
    if (mute) mute.textContent = p?.audioMuted ? 'Unmute' : 'Mute';
  }
}

async function startMedia() {
  const me = room.localParticipant;
  if (me.can_publish) {
    setStatus('Starting camera and microphone…');
    await room.publish();
    const local = tileFor(me.id, { name: me.name, role: me.role, local: true });
    local.video.srcObject = room.localStream;
    local.el.classList.toggle('no-video', room.localStream.getVideoTracks().length === 0);
  }
  setStatus('Connected.');
  document.body.dataset.state = 'joined';
}

async function demoToken(roomId, kind, role, name) {
  const r = await fetch('/dev/token', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ room_id: roomId, kind, role, name }),
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error?.message || `demo token refused (${r.status})`);
  return body;
}

async function join(ev) {
  ev?.preventDefault();
  $('join').disabled = true;
  try {
    const name = $('name').value.trim() || 'Guest';
    const kind = $('kind').value;
    const role = $('role').value;
    const roomId = $('room').value.trim() || `demo-${kind}`;
    let token = params.get('token');
    let wsUrl = params.get('ws') || '/ws';
    if (!token) {
      setStatus('Getting a demo token…');
      const t = await demoToken(roomId, kind, role, name);
      token = t.token;
      wsUrl = t.ws_url || wsUrl;
    }
    setStatus('Connecting…');
    room = await connect(new URL(wsUrl, location.href).href, token);
    window.confidantRoom = room; // for tests and the browser console
    wire(room);
    const me = room.localParticipant;
    $('join-form').hidden = true;
    $('session-bar').hidden = false;
    $('session-label').textContent = `${room.kind} session ${room.roomId} as ${me.role}`;
    $('care').hidden = me.role !== 'therapist';
    renderWaiting();
    statsTimer = setInterval(showStats, 1000);
    if (room.state === 'waiting') {
      setStatus('Please wait: the therapist will let you in shortly.');
      document.body.dataset.state = 'waiting';
      return; // media starts on `admitted`
    }
    for (const p of room.participants.values()) tileFor(p.id, p);
    await startMedia();
    refreshCare();
  } catch (err) {
    setStatus(`Could not join: ${err.message}`, true);
    document.body.dataset.state = 'error';
    $('join').disabled = false;
  }
}

function wire(r) {
  r.addEventListener('participantjoined', (e) => tileFor(e.detail.participant.id, e.detail.participant));
  r.addEventListener('participantleft', (e) => removeTile(e.detail.participantId));
  r.addEventListener('track', (e) => {
    const { trackId, participantId, kind } = e.detail;
    const p = r.participants.get(participantId) || { name: participantId };
    const t = tileFor(participantId, p);
    if (kind === 'video') {
      t.videoTrackId = trackId;
      r.attach(trackId, t.video);
    } else {
      const a = document.createElement('audio');
      a.dataset.track = trackId;
      t.el.appendChild(a);
      r.attach(trackId, a);
      t.audio.set(trackId, a);
    }
    refreshBadge(participantId);
  });
  r.addEventListener('trackended', (e) => {
    const t = tiles.get(e.detail.participantId);
    if (!t) return;
    if (t.videoTrackId === e.detail.trackId) { t.videoTrackId = null; t.video.srcObject = null; }
    t.audio.get(e.detail.trackId)?.remove();
    t.audio.delete(e.detail.trackId);
    refreshBadge(e.detail.participantId);
  });
  const onPause = (e) => {
    const rt = r.remoteTracks.get(e.detail.trackId);
    if (rt) refreshBadge(rt.participantId);
  };
  r.addEventListener('trackpaused', onPause);
  r.addEventListener('trackresumed', onPause);
  r.addEventListener('roomended', () => setStatus('The session has ended.'));
  r.addEventListener('waitingroom', renderWaiting);
  r.addEventListener('admitted', () => {
    for (const p of r.participants.values()) tileFor(p.id, p);
    startMedia().then(refreshCare).catch((err) => setStatus(err.message, true));
  });
  r.addEventListener('declined', (e) => setStatus(e.detail.message, true));
  r.addEventListener('removed', (e) => setStatus(e.detail.message, true));
  for (const name of ['roomlocked', 'checkin', 'onhold', 'participantstate', 'participantmuted', 'participantjoined']) {
    r.addEventListener(name, refreshCare);
  }
  r.addEventListener('participantmuted', (e) => {
    if (e.detail.local) setStatus(e.detail.muted ? 'The therapist muted your microphone for everyone.' : 'The therapist unmuted you.');
  });
  r.addEventListener('quality', (e) => { $('my-quality').dataset.quality = e.detail.quality; });
  r.addEventListener('participantquality', (e) => {
    const t = tiles.get(e.detail.participantId);
    if (t) t.el.querySelector('.quality').dataset.quality = e.detail.quality;
  });
  r.addEventListener('participantaudioonly', (e) => setStatus(`${r.participants.get(e.detail.participantId)?.name || 'A participant'} ${e.detail.active ? 'fell back to audio only' : 'has video again'} (${e.detail.reason}).`));
  r.addEventListener('disconnected', (e) => {
    const told = { 4003: 'declined', 4004: 'removed', 4001: 'ended' }[e.detail.code];
    if (!told) setStatus(`Disconnected (${e.detail.code}).`, true);
    cleanup();
  });
  r.addEventListener('error', (e) => setStatus(e.detail.error.message, true));
}

async function showStats() {
  if (!room) return;
  const { remote } = await room.getStats();
  for (const s of remote) {
    if (s.kind !== 'video') continue;
    const t = tiles.get(s.participantId);
    if (t) t.el.querySelector('.stats').textContent = s.frameWidth ? `${s.frameWidth}x${s.frameHeight} ${Math.round(s.framesPerSecond)} fps` : '';
  }
  for (const id of tiles.keys()) refreshBadge(id);
}

function cleanup() {
  clearInterval(statsTimer);
  for (const id of [...tiles.keys()]) removeTile(id);
  $('join-form').hidden = false;
  $('session-bar').hidden = true;
  $('care').hidden = true;
  for (const id of ['observers', 'hold', 'checkin']) $(id).hidden = true;
  $('join').disabled = false;
  document.body.dataset.state = 'left';
}

$('join-form').addEventListener('submit', join);
$('lock').addEventListener('click', () => (room.locked ? room.unlockRoom() : room.lockRoom()).catch((err) => setStatus(err.message, true)));
$('end-session').addEventListener('click', () => room?.endSession().catch((err) => setStatus(err.message, true)));
$('end-checkin').addEventListener('click', () => room?.endCheckIn().catch((err) => setStatus(err.message, true)));
$('leave').addEventListener('click', async () => { await room?.leave(); room = null; cleanup(); setStatus('You left.'); });
$('mute-audio').addEventListener('click', (e) => {
  const on = e.target.textContent.startsWith('Unmute');
  room?.setEnabled('audio', on);
  e.target.textContent = on ? 'Mute mic' : 'Unmute mic';
});
$('mute-video').addEventListener('click', (e) => {
  const on = e.target.textContent.startsWith('Start');
  room?.setEnabled('video', on);
  e.target.textContent = on ? 'Stop camera' : 'Start camera';
});
for (const key of ['name', 'role', 'kind', 'room']) if (params.has(key)) $(key).value = params.get(key);
if (params.get('autojoin') === '1') join();
