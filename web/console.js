// The operator's console page (served by the `console` service with
// console.html and hls.min.js; plain JavaScript, no build step).
//
// State comes pushed from /api/events (Server-Sent Events, one `state` event
// per second); while that stream is down, /api/state is polled every 2 s.
// The player plays <player_base>/<signal>/playlist.m3u8 with hls.js wherever
// it can run (MediaSource), and with the browser's native HLS otherwise
// (iPhone Safari); ?player=native|hlsjs forces one. hls.js comes first because
// Chromium's new native HLS stops for good on a decode error
// (MEDIA_ERR_DECODE "Parsed buffers not in DTS sequence" at the worker's loop
// seam) where hls.js plays on; an operator's player must not die by itself.
// It counts stalls: `waiting` events once playback has advanced.
// Everything shown is built with textContent (no HTML from data), and the
// elements carry ids and data-* attributes that the tests read.
'use strict';
(() => {
  const POLL_MS = 2000;            // fallback refresh while the event stream is down
  const RECONNECT_MS = 5000;       // a closed event stream is reopened after this
  const LATE_FACTOR = 3;           // a state older than this many refreshes is "late"
  const FROZEN_MS = 1500;          // playing but currentTime still this long: "frozen"
  const RETRY_PLAY_MS = 2000;      // after a fatal player error, start again after this
  const TIMELINE_SHOWN = 60;       // timeline entries drawn
  const TOKEN_KEY = 'nonstop-console-fault-token';
  const PLAYLIST = 'playlist.m3u8';
  const HLS_TYPE = 'application/vnd.apple.mpegurl';

  const params = new URLSearchParams(location.search);
  const forcedPlayer = params.get('player');         // 'native', 'hlsjs' or null
  // Low latency (LL-HLS parts, blocking reloads) unless ?latency=standard;
  // hls.js catches up to its target at up to 1.5x when it falls behind.
  const lowLatency = params.get('latency') !== 'standard';
  const HLS_CONFIG = lowLatency ? { lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5 } : { lowLatencyMode: false };
  const $ = (id) => document.getElementById(id);
  const video = $('video');
  const levelPick = $('player-level');
  // A rendition as the player panel names it, and the pick list's first entry.
  const levelName = (level) => `${level.height}p ${Math.round(level.bitrate / 1000)} kb/s`;
  const autoOption = () => h('option', { value: '-1' }, 'auto');

  // Small DOM builder: h('td', { class: 'x', 'data-a': 1 }, 'text', child, ...).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === 'class') el.className = v;
      else el.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const P = {                      // the player's own view
    signal: null, url: null, mode: null, hls: null,
    loadedAt: null, started: false, advanced: false, lastCt: 0, lastAdvanceAt: null,
    stalls: 0, stalledNow: false, errors: 0, lastError: null, retryTimer: null,
    latency: null, rendition: null, renditionSwitches: 0,
  };
  const C = window.__console = { transport: 'connecting', updates: 0, state: null, lastUpdateAt: null, player: P };

  // ---- helpers -------------------------------------------------------------

  // The fault control in front of a packager, when there is one.
  function controlOf(base) {
    const f = C.state && C.state.faults;
    return f && f.enabled ? f.controls.find((c) => c.control === base) : undefined;
  }

  function packagerLabel(base) {
    const c = controlOf(base);
    return c ? `${c.name} (${base})` : base;
  }

  // "YYYY-MM-DD HH:MM:SS" (the services' local time) -> ms, or NaN.
  const parseAt = (at) => new Date(String(at).replace(' ', 'T')).getTime();

  function ago(ms) {
    if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
    if (ms < 1000) return `${(ms / 1000).toFixed(1)} s`;
    if (ms < 120000) return `${Math.round(ms / 1000)} s`;
    return `${Math.round(ms / 60000)} min`;
  }

  // The proxy's own verdict (sig.state: up, degraded, ended, down) wins when
  // it is worse than what the packagers' health suggests: only the proxy
  // knows a live edge stopped behind every packager at once.
  function signalStatus(sig) {
    const seen = packagerStatus(sig);
    if (sig.state === 'ended') {
      return { status: 'ended', text: 'the stream ended (EXT-X-ENDLIST): its input was removed and no packager is live; viewers played to its end' };
    }
    if (sig.state === 'down') {
      return { status: 'down', text: 'no packager is fresh: the live edge stopped; viewers see the last playlist' };
    }
    if (sig.state && RANK[sig.state] > RANK[seen.status]) {
      return { status: sig.state, text: seen.text };
    }
    return seen;
  }

  function packagerStatus(sig) {
    if (!sig.watched) {
      return sig.live
        ? { status: 'waiting', text: 'live at the origin; the proxy serves it once a player asks' }
        : { status: 'down', text: 'unknown' };
    }
    const active = sig.packagers.find((p) => p.active);
    const fresh = sig.packagers.filter((p) => p.health === 'fresh');
    if (!active || active.health !== 'fresh') {
      return fresh.length
        ? { status: 'degraded', text: 'switching to a fresh packager' }
        : { status: 'down', text: 'no packager is fresh' };
    }
    const others = sig.packagers.filter((p) => p.health !== 'fresh')
      .map((p) => `${packagerLabel(p.packager)} ${p.health}`);
    const where = `on ${packagerLabel(active.packager)}`;
    if (!sig.live) return { status: 'degraded', text: `${where}; the origin no longer lists it` };
    if (others.length) return { status: 'degraded', text: `${where}; ${others.join(', ')}` };
    if (sig.packagers.length < 2) return { status: 'degraded', text: `${where}; no second packager` };
    return { status: 'up', text: where };
  }

  const RANK = { up: 0, waiting: 1, degraded: 2, ended: 3, down: 4 };

  // What the workers panel shows wrong: a worker down, or one of its signals
  // not encoding or behind the wall clock. Viewers still play from the other
  // worker, so an otherwise up stream is degraded: its redundancy is gone.
  function workerTrouble(workers) {
    const trouble = [];
    for (const w of workers) {
      if (!w.up) { trouble.push(`worker ${w.url} down`); continue; }
      for (const sig of w.signals) {
        if (sig.state !== 'encoding') trouble.push(`worker ${w.url} ${sig.signal} ${sig.state}`);
        else if (sig.behind) trouble.push(`worker ${w.url} ${sig.signal} behind`);
      }
    }
    return trouble;
  }

  // ---- rendering -----------------------------------------------------------

  function render(s) {
    C.state = s;
    C.updates += 1;
    C.lastUpdateAt = Date.now();
    renderOverall(s);
    renderSources(s);
    renderSignals(s);
    renderPackagers(s);
    renderTimeline(s);
    renderFaults(s.faults);
    renderWorkers(s.workers || []);
    $('updated').textContent = `updated ${s.generated_at.slice(11)}`;
    $('updated').classList.remove('late');
    if (!P.signal) {
      const first = s.signals.find((x) => x.live) || s.signals[0];
      const wanted = params.get('signal');
      const pick = (wanted && s.signals.find((x) => x.signal === wanted)) || first;
      if (pick) play(pick.signal);
    } else if (P.url === null && s.player_base) {
      play(P.signal);
    }
  }

  function renderOverall(s) {
    let status = 'up';
    let text = '';
    if (!s.proxy.ok) { status = 'down'; text = `proxy ${s.proxy.error}`; }
    else if (!s.signals.length) { status = 'down'; text = s.origin.ok ? 'no live signal' : `origin ${s.origin.error}`; }
    else {
      const worst = s.signals.map(signalStatus).reduce((a, b) => (RANK[b.status] > RANK[a.status] ? b : a));
      status = worst.status;
      const n = s.signals.length;
      text = status === 'up' ? `${n} signal${n > 1 ? 's' : ''} up` : worst.text;
      if (!s.origin.ok) { status = status === 'up' ? 'degraded' : status; text += ` · origin ${s.origin.error}`; }
    }
    const trouble = workerTrouble(s.workers || []);
    if (trouble.length) {
      if (status === 'up') status = 'degraded';
      text = `${text} · ${trouble.join(', ')}`;
    }
    const el = $('overall');
    el.dataset.status = status;
    el.textContent = status === 'up' ? 'stream up' : status;
    $('overall-text').textContent = text;
  }

  function renderSources(s) {
    const src = (name, v) => h('span', { 'data-source': name, 'data-ok': v.ok },
      `${name} ${v.ok ? 'ok' : 'unreachable'}`, v.ok ? null : h('span', { class: 'dim' }, ` (${v.error})`));
    $('sources').replaceChildren(src('origin', s.origin), src('proxy', s.proxy));
  }

  function renderSignals(s) {
    const items = s.signals.map((sig) => {
      const st = signalStatus(sig);
      const button = h('button', { type: 'button', 'data-signal': sig.signal, 'aria-current': sig.signal === P.signal ? 'true' : 'false', title: 'play this signal' },
        h('span', { class: 'name' }, sig.signal),
        h('span', { class: 'badge', 'data-status': st.status }, st.status),
        viewersLabel(sig),
        h('div', { class: 'dim' }, st.text));
      button.addEventListener('click', () => play(sig.signal));
      return h('li', { 'data-signal': sig.signal, 'data-status': st.status }, button);
    });
    if (!items.length) items.push(h('li', { class: 'dim' }, s.origin.ok ? 'no live signal' : 'origin unreachable'));
    $('signals').replaceChildren(...items);
  }

  // Viewers now through the proxy (distinct clients within two target
  // durations); nothing while the proxy does not serve the signal.
  function viewersLabel(sig) {
    if (sig.viewers === null || sig.viewers === undefined) return null;
    return h('span', { class: 'viewers', 'data-viewers': sig.viewers, title: 'distinct clients watching through the proxy (address and User-Agent, last two target durations)' },
      `${sig.viewers} viewer${sig.viewers === 1 ? '' : 's'}`);
  }

  function renderPackagers(s) {
    const sections = s.signals.map((sig) => {
      const st = signalStatus(sig);
      const head = h('h3', {}, sig.signal, h('span', { class: 'badge', 'data-status': st.status }, st.status), viewersLabel(sig), h('span', { class: 'dim' }, st.text));
      if (!sig.watched) return h('div', { class: 'signal-detail', 'data-signal': sig.signal }, head);
      const rows = sig.packagers.map((p) => h('tr', { 'data-packager': p.packager, 'data-health': p.health, 'data-active': p.active },
        h('td', { class: 'active', title: p.active ? 'the proxy serves from this one' : '' }, p.active ? '★' : ''),
        h('td', {}, packagerLabel(p.packager)),
        h('td', {}, h('span', { class: 'health', 'data-health': p.health }, p.health)),
        h('td', { class: 'seq' }, p.newest_sequence === null ? '-' : p.newest_sequence),
        h('td', { class: 'age' }, p.advanced_ms_ago === null ? '-' : `${ago(p.advanced_ms_ago)} ago`),
        h('td', { class: 'behind', 'data-behind-ms': p.behind_twin_ms ?? '', title: 'how far its live edge is behind its freshest twin, by their dates (worker clock skew, or a late worker)' },
          p.behind_twin_ms === null || p.behind_twin_ms === undefined ? '-' : `${(p.behind_twin_ms / 1000).toFixed(1)} s`),
        h('td', { class: 'error' }, p.last_error || '')));
      const table = h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, ''), h('th', {}, 'packager'), h('th', {}, 'health'),
          h('th', {}, 'newest seq'), h('th', {}, 'last advance'), h('th', {}, 'behind twin'), h('th', {}, 'last error'))),
        h('tbody', {}, ...rows));
      const renditions = (sig.renditions || []).length === 0 ? null : h('div', { class: 'renditions' },
        'renditions: ', ...sig.renditions.map((r) => h('span', { class: 'rendition badge', 'data-rendition': r.playlist, 'data-status': r.state,
          title: `${r.fresh} of ${r.packagers} packagers fresh for this rendition` }, `${r.playlist.replace(/\.m3u8$/, '')} ${r.state}`)));
      return h('div', { class: 'signal-detail', 'data-signal': sig.signal }, head, renditions, table);
    });
    $('packagers').replaceChildren(...sections);
  }

  // A worker's signal state as a health pill: encoding is fresh, starting
  // unknown, behind stale, restarting/stopped/down failing.
  function workerHealth(state, behind) {
    if (state === 'encoding') return behind ? 'stale' : 'fresh';
    if (state === 'starting') return 'unknown';
    return 'failing';
  }

  function renderWorkers(workers) {
    $('workers-panel').hidden = !workers.length;
    const rows = [];
    for (const w of workers) {
      if (!w.up) {
        rows.push(h('tr', { 'data-worker': w.url, 'data-state': 'down' },
          h('td', {}, w.url), h('td', {}, '-'),
          h('td', {}, h('span', { class: 'health', 'data-health': 'failing' }, 'down')),
          h('td', { class: 'error', colspan: 2 }, w.error || '')));
        continue;
      }
      if (!w.signals.length) {
        rows.push(h('tr', { 'data-worker': w.url, 'data-state': 'idle' },
          h('td', {}, w.url), h('td', { class: 'dim' }, 'no signal'), h('td', {}, ''), h('td', {}, ''), h('td', {}, '')));
      }
      for (const sig of w.signals) {
        const n = sig.newest;
        const state = sig.behind ? `${sig.state}, behind` : sig.state;
        rows.push(h('tr', { 'data-worker': w.url, 'data-signal': sig.signal, 'data-state': sig.state, 'data-behind': sig.behind },
          h('td', {}, w.url), h('td', {}, sig.signal),
          h('td', {}, h('span', { class: 'health', 'data-health': workerHealth(sig.state, sig.behind) }, state)),
          h('td', { class: 'seq', title: n ? `sequence ${n.sequence}, program date-time ${n.program_date_time}` : '' }, n ? n.name : '-'),
          h('td', { class: 'age' }, n ? ago(n.behind_ms) : '-')));
      }
    }
    $('workers').replaceChildren(h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'worker'), h('th', {}, 'signal'), h('th', {}, 'state'),
        h('th', {}, 'newest segment'), h('th', {}, 'behind'))),
      h('tbody', {}, ...rows)));
  }

  function renderTimeline(s) {
    const now = parseAt(s.generated_at);
    const items = s.timeline.slice(0, TIMELINE_SHOWN).map((e) => {
      const age = now - parseAt(e.at);
      const when = h('time', { datetime: e.at, title: e.at }, `${e.at.slice(11)}${Number.isFinite(age) ? ` · ${ago(age)} ago` : ''}`);
      when.append(' ');
      if (e.kind === 'fault') {
        const mode = (s.faults.modes || []).find((m) => m.mode === e.mode);
        return h('li', { 'data-kind': 'fault', 'data-name': e.name, 'data-mode': e.mode }, when,
          `fault "${mode ? mode.label : e.mode}" set on ${e.name} (${e.control})`);
      }
      const what = e.from
        ? `${packagerLabel(e.from)} → ${packagerLabel(e.to)}`
        : `serving from ${packagerLabel(e.to)}`;
      return h('li', { 'data-kind': 'switch', 'data-signal': e.signal, 'data-from': e.from || '', 'data-to': e.to }, when,
        h('b', {}, e.signal), ` ${what} `, h('span', { class: 'reason' }, e.reason));
    });
    if (!items.length) items.push(h('li', { class: 'dim' }, 'nothing happened yet'));
    $('timeline').replaceChildren(...items);
  }

  // ---- fault controls ------------------------------------------------------

  let controlsKey = null;

  function renderFaults(f) {
    const section = $('faults');
    section.hidden = !f.enabled;
    if (!f.enabled) return;
    const token = sessionStorage.getItem(TOKEN_KEY);
    $('fault-auth').hidden = !!token;
    $('fault-unlocked').hidden = !token;
    const key = JSON.stringify([f.controls.map((c) => [c.name, c.control]), f.modes.map((m) => m.mode)]);
    if (key !== controlsKey) {
      controlsKey = key;
      $('fault-controls').replaceChildren(...f.controls.map((c) => h('div', { class: 'fault', 'data-fault': c.name, 'data-base': c.control },
        h('strong', {}, c.name), h('code', {}, c.control), h('span', { class: 'mode dim' }, ''),
        ...f.modes.map((m) => {
          const b = h('button', { type: 'button', 'data-fault': c.name, 'data-mode': m.mode, title: m.help }, m.label);
          b.addEventListener('click', () => trigger(c.name, m));
          return b;
        }))));
    }
    for (const c of f.controls) {
      const row = $('fault-controls').querySelector(`.fault[data-fault="${CSS.escape(c.name)}"]`);
      if (!row) continue;
      row.dataset.current = c.mode || '';
      const label = c.mode === 'none' ? 'normal' : (f.modes.find((m) => m.mode === c.mode) || { label: c.mode }).label;
      row.querySelector('.mode').textContent = c.mode ? `now: ${label}` : `unreachable (${c.error})`;
      for (const b of row.querySelectorAll('button')) {
        b.disabled = !token;
        b.classList.toggle('on', b.dataset.mode === c.mode && c.mode !== 'none');
      }
    }
  }

  function showResult(ok, text) {
    const r = $('fault-result');
    r.dataset.ok = ok;
    r.textContent = text;
  }

  async function trigger(name, mode) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) { showResult(false, 'enter the token first'); return; }
    showResult('pending', `setting "${mode.label}" on ${name}…`);
    let res;
    let body = {};
    try {
      res = await fetch(`/api/faults/${encodeURIComponent(name)}/${encodeURIComponent(mode.mode)}`, {
        method: 'POST', headers: { authorization: `Bearer ${token}` }, cache: 'no-store',
      });
      body = await res.json().catch(() => ({}));
    } catch (e) {
      showResult(false, `console unreachable: ${e.message}`);
      return;
    }
    if (res.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showResult(false, 'token refused: enter it again');
      if (C.state) renderFaults(C.state.faults);
      return;
    }
    if (!res.ok) { showResult(false, `failed: ${body.error || res.status}`); return; }
    $('fault-result').dataset.mode = mode.mode;
    showResult(true, `"${mode.label}" set on ${name}`);
  }

  $('fault-auth').addEventListener('submit', (e) => {
    e.preventDefault();
    const value = $('fault-token').value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $('fault-token').value = '';
    showResult(true, 'token kept for this tab');
    if (C.state) renderFaults(C.state.faults);
  });
  $('fault-lock').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showResult(true, 'token forgotten');
    if (C.state) renderFaults(C.state.faults);
  });

  // ---- player --------------------------------------------------------------

  function teardown() {
    clearTimeout(P.retryTimer);
    levelPick.replaceChildren(autoOption());
    levelPick.disabled = true;
    if (P.hls) { P.hls.destroy(); P.hls = null; }
    video.removeAttribute('src');
    video.load();
  }

  function play(signal) {
    const s = C.state;
    teardown();
    Object.assign(P, { signal, url: null, started: false, advanced: false, lastCt: 0, lastAdvanceAt: null, stalls: 0, stalledNow: false, errors: 0, lastError: null, latency: null, rendition: null, renditionSwitches: 0 });
    for (const b of document.querySelectorAll('#signals button')) b.setAttribute('aria-current', b.dataset.signal === signal ? 'true' : 'false');
    $('player-signal').textContent = signal;
    if (!s) return;
    start(`${s.player_base}/${encodeURIComponent(signal)}/${PLAYLIST}`);
  }

  function start(url) {
    P.url = url;
    P.loadedAt = performance.now();
    $('player-url').textContent = url;
    const native = video.canPlayType(HLS_TYPE) !== '';
    const hlsOk = typeof Hls !== 'undefined' && Hls.isSupported();
    const useNative = forcedPlayer === 'native' || (forcedPlayer !== 'hlsjs' && !hlsOk && native);
    if (useNative) {
      P.mode = 'native';
      video.src = url;
    } else if (!hlsOk) {
      P.mode = 'none';
      noteError('this browser has neither native HLS nor MediaSource for hls.js');
      $('player-mode').textContent = P.mode;
      return;
    } else {
      P.mode = `hls.js ${Hls.version}${lowLatency ? ' LL' : ''}`;
      const hls = P.hls = new Hls(HLS_CONFIG);
      hls.on(Hls.Events.LEVEL_SWITCHED, (_e, data) => {
        const level = hls.levels[data.level];
        const name = level ? levelName(level) : String(data.level);
        if (P.rendition !== null && P.rendition !== name) P.renditionSwitches += 1;
        P.rendition = name;
      });
      hls.on(Hls.Events.MANIFEST_PARSED, () => showLevels(hls));
      hls.on(Hls.Events.ERROR, (_e, data) => {
        if (!data.fatal) return;
        noteError(`${data.type}: ${data.details}`);
        if (data.type === Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
        else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
        else restartSoon();
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    }
    $('player-mode').textContent = P.mode;
    const p = video.play();
    if (p && p.catch) p.catch(() => { /* autoplay waits for data; muted autoplay is allowed */ });
  }

  // The operator may hold one rendition (to look at each rung) or leave
  // hls.js to choose ('auto'); the switch happens at the next fragment, so
  // playback does not stop. Native HLS chooses on its own: no choice then.
  function showLevels(hls) {
    levelPick.replaceChildren(autoOption(),
      ...hls.levels.map((level, i) => h('option', { value: String(i) }, levelName(level))));
    levelPick.value = '-1';
    levelPick.disabled = hls.levels.length < 2;
  }
  levelPick.addEventListener('change', () => {
    if (P.hls) P.hls.nextLevel = Number(levelPick.value);
  });

  function noteError(text) {
    P.errors += 1;
    P.lastError = text;
    $('player-errors').textContent = `player errors: ${P.errors} (last: ${text})`;
  }

  function restartSoon() {
    clearTimeout(P.retryTimer);
    P.retryTimer = setTimeout(() => { if (P.signal) play(P.signal); }, RETRY_PLAY_MS);
  }

  video.addEventListener('error', () => {
    if (P.mode !== 'native' || !video.error) return;   // hls.js reports its own
    noteError(`media error ${video.error.code}${video.error.message ? ': ' + video.error.message : ''}`);
    restartSoon();
  });
  video.addEventListener('waiting', () => {
    // Before the first advance this is start-up (pre-roll), not a stall.
    if (!P.advanced || P.stalledNow) return;
    P.stalls += 1;
    P.stalledNow = true;
  });
  video.addEventListener('playing', () => {
    if (!P.started) {
      // Where playback starts (the live edge) is not an advance; from here on it is.
      P.started = true;
      P.lastCt = video.currentTime;
      P.lastAdvanceAt = performance.now();
      return;
    }
    P.stalledNow = false;
  });
  video.addEventListener('timeupdate', () => noteAdvance());

  function noteAdvance() {
    if (!P.started) return;
    const ct = video.currentTime;
    if (ct < P.lastCt - 0.5) P.lastCt = ct;   // the player jumped back (a seek): measure from there
    if (ct > P.lastCt + 0.001) {
      P.advanced = true;
      P.lastCt = ct;
      P.lastAdvanceAt = performance.now();
      P.stalledNow = false;
    }
  }

  // Seconds behind live: the wall clock minus the program date-time of the
  // frame on screen (hls.js knows it; natively, Safari's getStartDate).
  function latencyNow() {
    if (P.hls && P.hls.playingDate) return (Date.now() - P.hls.playingDate.getTime()) / 1000;
    if (P.mode === 'native' && typeof video.getStartDate === 'function') {
      const start = video.getStartDate().getTime();
      if (!Number.isNaN(start)) return (Date.now() - start) / 1000 - video.currentTime;
    }
    return null;
  }

  function playerState() {
    if (!P.url) return 'idle';
    if (P.stalledNow) return 'stalled';
    if (!P.advanced) return P.errors ? 'error' : 'starting';
    if (video.paused) return 'paused';
    if (performance.now() - P.lastAdvanceAt > FROZEN_MS) return 'frozen';
    return 'playing';
  }

  setInterval(() => {
    noteAdvance();
    $('player-time').textContent = video.currentTime.toFixed(1);
    P.latency = P.advanced ? latencyNow() : null;
    $('player-latency').textContent = P.latency === null ? '-' : `${P.latency.toFixed(1)} s`;
    $('player-rendition').textContent = P.rendition === null ? '-' : `${P.rendition}${P.renditionSwitches ? ` (${P.renditionSwitches} switch${P.renditionSwitches === 1 ? '' : 'es'})` : ''}`;
    const stalls = $('stall-count');
    stalls.textContent = String(P.stalls);
    stalls.dataset.stalls = P.stalls;
    const state = playerState();
    const el = $('player-state');
    el.textContent = state;
    el.dataset.state = state;
    P.currentTime = video.currentTime;
    if (C.lastUpdateAt !== null && C.state) {
      const late = Date.now() - C.lastUpdateAt;
      if (late > LATE_FACTOR * C.state.refresh_ms) {
        $('updated').textContent = `no update for ${ago(late)}`;
        $('updated').classList.add('late');
      }
    }
  }, 250);

  // ---- state transport -----------------------------------------------------

  let source = null;
  let pollTimer = null;

  function setTransport(t) {
    C.transport = t;
    const el = $('transport');
    el.dataset.transport = t;
    el.textContent = { live: 'live (pushed)', polling: 'polling', reconnecting: 'reconnecting', offline: 'console unreachable', connecting: 'connecting' }[t] || t;
  }

  async function pollOnce() {
    try {
      const res = await fetch('/api/state', { cache: 'no-store' });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      render(await res.json());
      if (C.transport !== 'live') setTransport('polling');
    } catch (_e) {
      if (C.transport !== 'live') setTransport('offline');
    }
  }

  function startPolling() {
    if (pollTimer !== null) return;
    pollTimer = setInterval(pollOnce, POLL_MS);
    pollOnce();
  }

  function stopPolling() {
    if (pollTimer === null) return;
    clearInterval(pollTimer);
    pollTimer = null;
  }

  function connect() {
    if (typeof EventSource === 'undefined') { startPolling(); return; }
    source = new EventSource('/api/events');
    source.addEventListener('state', (e) => {
      setTransport('live');
      stopPolling();
      try { render(JSON.parse(e.data)); } catch (err) { console.error('bad state event', err); }
    });
    source.addEventListener('error', () => {
      setTransport('reconnecting');
      startPolling();                      // EventSource retries by itself meanwhile
      if (source.readyState === EventSource.CLOSED) {
        source = null;
        setTimeout(connect, RECONNECT_MS);
      }
    });
  }

  connect();
})();
