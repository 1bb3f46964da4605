#!/usr/bin/env node
// Drives the operator's console in headless Chromium (Debian's /usr/bin/chromium
// through playwright-core) the way an operator would, and prints ONE JSON
// verdict on stdout; progress goes to stderr. lab/tests/system/console.rs runs it.
//
//   node lab/web/console-test.mjs --console http://127.0.0.1:8003 --token T \
//        [--signal live01] [--fault server1] [--kill-pid PID] [--watch 10] \
//        [--kill-worker-pid PID] [--screenshot target/test-artifacts/console.png]
//
// Steps: the page loads and lists the signal; its player's currentTime
// advances; the token is entered once and the fault control's "kill" button is
// clicked for --fault; the page's timeline must show the proxy switching away
// from that packager while currentTime keeps advancing for --watch seconds.
// With --kill-pid: "restore" is clicked, and once the page shows that packager
// fresh again, the process PID (the other packager) gets SIGKILL; the timeline
// must show the switch back, playback still advancing.
// With --kill-worker-pid: last, that worker gets SIGKILL and the page's overall
// badge must leave "stream up" and name the worker.
// With --pick-rendition HEIGHT instead of faults (a ladder): once playing, the
// operator picks that rendition in the player's "pick" list; the page's
// "rendition" must show it, with the switch counted, playback advancing for
// --watch seconds after it shows.
//
// Exit 0: every step ran (judge the JSON). Exit 1: a step failed or could not
// run; one "error: ..." line on stderr, and the JSON (with "failed") is still
// printed when the page ran.

import fs from 'node:fs';
import path from 'node:path';

import {
  DEFAULT_CHROMIUM, Fail, describeFailure, exitCleanly, firstLine, firstPage, launchChromium,
  logger, openPage, parseCli, positiveNumber, sleep,
} from './chromium.mjs';

const VIEWPORT = { width: 1280, height: 860 };
const SAMPLE_MS = 250;            // how often the page's numbers are read
const LOAD_TIMEOUT_MS = 20000;    // page load and the signal appearing
const START_TIMEOUT_MS = 30000;   // first advance of the player
const START_ADVANCE_S = 2;        // currentTime must advance this much before faults
const SWITCH_TIMEOUT_MS = 20000;  // a kill must show as a switch within this
const RECOVER_TIMEOUT_MS = 40000; // a restored packager must show fresh within this

const USAGE = `usage: node console-test.mjs --console URL --token TOKEN [--signal live01] [--fault server1]
        [--kill-pid PID] [--kill-worker-pid PID] [--watch SECONDS] [--screenshot FILE.png]
        [--player auto|native|hlsjs] [--pick-rendition HEIGHT]
        [--timeout SECONDS] [--chromium PATH]`;

const log = logger('console-test');

function readCli(argv) {
  const o = parseCli(argv, {
    console: { type: 'string' },
    token: { type: 'string' },
    signal: { type: 'string', default: 'live01' },
    fault: { type: 'string', default: 'server1' },
    'kill-pid': { type: 'string' },
    'kill-worker-pid': { type: 'string' },
    watch: { type: 'string', default: '10' },
    screenshot: { type: 'string' },
    player: { type: 'string', default: 'auto' },
    'pick-rendition': { type: 'string' },
    timeout: { type: 'string', default: '240' },
    chromium: { type: 'string', default: DEFAULT_CHROMIUM },
  }, USAGE);
  if (!o.console) throw new Fail('--console is required (see --help)');
  const pickRendition = o['pick-rendition'] === undefined ? null : Math.round(positiveNumber(o['pick-rendition'], '--pick-rendition'));
  if (!o.token && pickRendition === null) throw new Fail('--token is required (see --help)');
  const watch = positiveNumber(o.watch, '--watch');
  const timeout = positiveNumber(o.timeout, '--timeout');
  const killPid = o['kill-pid'] === undefined ? null : Number(o['kill-pid']);
  if (killPid !== null && !(Number.isInteger(killPid) && killPid > 1)) throw new Fail(`bad --kill-pid '${o['kill-pid']}'`);
  const killWorkerPid = o['kill-worker-pid'] === undefined ? null : Number(o['kill-worker-pid']);
  if (killWorkerPid !== null && !(Number.isInteger(killWorkerPid) && killWorkerPid > 1)) throw new Fail(`bad --kill-worker-pid '${o['kill-worker-pid']}'`);
  if (!['auto', 'native', 'hlsjs'].includes(o.player)) throw new Fail(`bad --player '${o.player}'`);
  const url = new URL(o.console);
  if (o.player !== 'auto') url.searchParams.set('player', o.player);
  return {
    url: url.href, token: o.token, signal: o.signal, fault: o.fault, killPid, killWorkerPid, pickRendition,
    watchMs: Math.round(watch * 1000), timeoutMs: Math.round(timeout * 1000),
    screenshot: o.screenshot ? path.resolve(o.screenshot) : null, chromium: o.chromium,
  };
}

// What the verdict reports; filled as the steps run.
const verdict = {
  loaded: false,
  signal_shown: false,
  viewers_shown: null,
  player: null,
  transport: null,
  started: false,
  advanced_before_kill_s: null,
  kill_clicked: false,
  kill_result: null,
  switch_shown: false,
  switch_after_ms: null,
  switch_reason: null,
  active_after_kill: null,
  advanced_after_kill_s: null,
  max_frozen_ms_after_kill: null,
  restore_clicked: false,
  restored_fresh: false,
  second_kill_pid: null,
  second_switch_shown: false,
  second_switch_after_ms: null,
  second_switch_reason: null,
  advanced_after_second_kill_s: null,
  max_frozen_ms_after_second_kill: null,
  stalls: null,
  player_errors: null,
  timeline: [],
  external_requests: [],
  page_errors: [],
  renditions_offered: null,
  rendition_before_pick: null,
  rendition_shown: null,
  rendition_shown_after_ms: null,
  advanced_after_pick_s: null,
  max_frozen_ms_after_pick: null,
  screenshot: null,
  failed: null,
};

async function main(opts) {
  const context = await launchChromium({
    executable: opts.chromium,
    viewport: VIEWPORT,
    tmpPrefix: 'nonstop-console-chromium-',
  });
  const page = await firstPage(context);
  page.on('pageerror', (e) => { verdict.page_errors.push(e.message); log(`page error: ${e.message}`); });
  page.on('console', (m) => { if (m.type() === 'error') log(`console.error: ${m.text()}`); });
  page.on('request', (r) => {
    const u = new URL(r.url());
    const local = ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname) || u.protocol === 'blob:' || u.protocol === 'data:';
    if (!local) verdict.external_requests.push(r.url());
  });

  const resp = await page.goto(opts.url, { waitUntil: 'load', timeout: LOAD_TIMEOUT_MS }).catch((e) => {
    throw new Fail(`could not open the console at ${opts.url}: ${firstLine(e)}`);
  });
  if (!resp || !resp.ok()) throw new Fail(`the console answered ${resp ? resp.status() : 'nothing'}`);
  verdict.loaded = true;
  log(`console loaded at ${opts.url}`);

  const S = opts.signal;
  const sel = (s) => s.replace(/"/g, '\\"');
  await page.waitForSelector(`#signals li[data-signal="${sel(S)}"]`, { timeout: LOAD_TIMEOUT_MS })
    .catch(() => { throw new Fail(`the page never listed signal '${S}'`); });
  verdict.signal_shown = true;
  log(`signal '${S}' shown`);

  // The numbers the page shows (its own stall counter, not ours).
  const read = () => page.evaluate(() => ({
    ct: document.getElementById('video').currentTime,
    shownTime: Number(document.getElementById('player-time').textContent),
    stalls: Number(document.getElementById('stall-count').textContent),
    state: document.getElementById('player-state').dataset.state,
    mode: document.getElementById('player-mode').textContent,
    transport: window.__console.transport,
    errors: window.__console.player.errors,
    started: window.__console.player.started,
  }));

  // Playback starts and advances.
  let first = null;
  let r;
  const startDeadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    r = await read();
    if (r.started && first === null) first = r.ct;
    if (first !== null && r.ct - first >= START_ADVANCE_S) break;
    if (Date.now() > startDeadline) throw new Fail(`the player did not advance ${START_ADVANCE_S} s within ${START_TIMEOUT_MS / 1000} s (state ${r.state}, currentTime ${r.ct})`);
    await sleep(SAMPLE_MS);
  }
  verdict.started = true;
  verdict.player = r.mode;
  verdict.advanced_before_kill_s = +(r.ct - first).toFixed(2);
  log(`playing with ${r.mode}: currentTime ${first.toFixed(2)} -> ${r.ct.toFixed(2)}, transport ${r.transport}`);

  // The page's own player is a viewer: the count the page shows for the
  // signal (the proxy's, pushed with the state) once it plays.
  verdict.viewers_shown = await page.waitForFunction((s) => {
    const el = document.querySelector(`#signals li[data-signal="${s}"] .viewers`);
    const n = el ? Number(el.dataset.viewers) : 0;
    return n >= 1 ? n : null;
  }, S, { timeout: LOAD_TIMEOUT_MS }).then((handle) => handle.jsonValue()).catch(() => null);
  log(`viewers shown: ${verdict.viewers_shown}`);

  if (opts.pickRendition !== null) {
    await pickRendition(page, opts, read);
    return;
  }

  // Unlock the fault controls once, as an operator would.
  const row = `#faults .fault[data-fault="${sel(opts.fault)}"]`;
  await page.waitForSelector(row, { timeout: LOAD_TIMEOUT_MS })
    .catch(() => { throw new Fail(`no fault control '${opts.fault}' on the page (are fault controls enabled?)`); });
  const base = await page.getAttribute(row, 'data-base');
  await page.fill('#fault-token', opts.token);
  await page.click('#fault-unlock');
  await page.waitForSelector(`${row} button[data-mode="reset"]:not([disabled])`, { timeout: 5000 });

  const switches = (attr, value) => page.locator(`#timeline li[data-kind="switch"][data-signal="${sel(S)}"][${attr}="${sel(value)}"]`);
  const newestReason = async (attr, value) => (await switches(attr, value).first().locator('.reason').textContent()) || '';

  // Click a fault button and wait for the page to confirm it.
  async function click(mode) {
    await page.click(`${row} button[data-mode="${mode}"]`);
    await page.waitForSelector(`#fault-result[data-ok="true"][data-mode="${mode}"]`, { timeout: 5000 })
      .catch(async () => { throw new Fail(`the page did not confirm '${mode}': ${await page.textContent('#fault-result')}`); });
    return page.textContent('#fault-result');
  }

  // Waits for one more switch matching attr=value, while watching playback for
  // watchMs after `t0`; returns the measures.
  async function watchThrough(attr, value, before, t0, ct0) {
    const { shownAt: switchedAt, maxFrozen } = await watchPlayback(read, t0, ct0, opts.watchMs, false, async (now) => {
      if ((await switches(attr, value).count()) <= before) return false;
      log(`switch shown ${now - t0} ms after the fault: ${await newestReason(attr, value)}`);
      return true;
    });
    const end = await read();
    return {
      shown: switchedAt !== null,
      afterMs: switchedAt === null ? null : switchedAt - t0,
      reason: switchedAt === null ? null : await newestReason(attr, value),
      advanced: +(end.ct - ct0).toFixed(2),
      maxFrozen,
    };
  }

  // Phase 1: "kill" the packager behind the fault control from the page.
  const before1 = await switches('data-from', base).count();
  const ct1 = (await read()).ct;
  const t1 = Date.now();
  verdict.kill_result = await click('reset');
  verdict.kill_clicked = true;
  log(`clicked kill on ${opts.fault} (${base}) at currentTime ${ct1.toFixed(2)}`);
  const p1 = await watchThrough('data-from', base, before1, t1, ct1);
  verdict.switch_shown = p1.shown;
  verdict.switch_after_ms = p1.afterMs;
  verdict.switch_reason = p1.reason;
  verdict.advanced_after_kill_s = p1.advanced;
  verdict.max_frozen_ms_after_kill = p1.maxFrozen;
  verdict.active_after_kill = await page.evaluate((s) => {
    const row = document.querySelector(`.signal-detail[data-signal="${CSS.escape(s)}"] tr[data-active="true"]`);
    return row ? row.dataset.packager : null;
  }, S);
  log(`after kill: currentTime +${p1.advanced} s, longest freeze ${p1.maxFrozen} ms, active ${verdict.active_after_kill}`);
  if (!p1.shown) throw new Fail(`the page showed no switch away from ${base} within ${SWITCH_TIMEOUT_MS / 1000} s`);

  // Phase 2: restore it, then SIGKILL the other packager's process.
  if (opts.killPid !== null) {
    await click('none');
    verdict.restore_clicked = true;
    await page.waitForSelector(`.signal-detail[data-signal="${sel(S)}"] tr[data-packager="${sel(base)}"][data-health="fresh"]`, { timeout: RECOVER_TIMEOUT_MS })
      .catch(() => { throw new Fail(`${base} was not shown fresh again within ${RECOVER_TIMEOUT_MS / 1000} s of restore`); });
    verdict.restored_fresh = true;
    log(`${base} fresh again; killing pid ${opts.killPid}`);
    const before2 = await switches('data-to', base).count();
    const ct2 = (await read()).ct;
    const t2 = Date.now();
    try { process.kill(opts.killPid, 'SIGKILL'); } catch (e) { throw new Fail(`cannot kill pid ${opts.killPid}: ${e.message}`); }
    verdict.second_kill_pid = opts.killPid;
    const p2 = await watchThrough('data-to', base, before2, t2, ct2);
    verdict.second_switch_shown = p2.shown;
    verdict.second_switch_after_ms = p2.afterMs;
    verdict.second_switch_reason = p2.reason;
    verdict.advanced_after_second_kill_s = p2.advanced;
    verdict.max_frozen_ms_after_second_kill = p2.maxFrozen;
    log(`after SIGKILL: currentTime +${p2.advanced} s, longest freeze ${p2.maxFrozen} ms`);
    if (!p2.shown) throw new Fail(`the page showed no switch back to ${base} within ${SWITCH_TIMEOUT_MS / 1000} s of the SIGKILL`);
  }

  // Phase 3: the worker killed; the overall badge must say so.
  if (opts.killWorkerPid !== null) {
    verdict.workers_before_worker_kill = await readWorkers(page);
    try { process.kill(opts.killWorkerPid, 'SIGKILL'); } catch (e) { throw new Fail(`cannot kill worker pid ${opts.killWorkerPid}: ${e.message}`); }
    verdict.worker_kill_pid = opts.killWorkerPid;
    const t3 = Date.now();
    await page.waitForFunction(() => {
      const el = document.getElementById('overall');
      return el.dataset.status !== 'up' && document.getElementById('overall-text').textContent.includes('worker');
    }, null, { timeout: SWITCH_TIMEOUT_MS })
      .catch(() => { throw new Fail(`the overall badge did not name the killed worker within ${SWITCH_TIMEOUT_MS / 1000} s`); });
    verdict.worker_badge = await page.evaluate(() => ({
      status: document.getElementById('overall').dataset.status,
      text: document.getElementById('overall-text').textContent,
    }));
    verdict.worker_badge_after_ms = Date.now() - t3;
    log(`worker killed: badge ${verdict.worker_badge.status} (${verdict.worker_badge.text}) after ${verdict.worker_badge_after_ms} ms`);
  }
}

// The operator picks the rendition of --pick-rendition's height in the
// player's list; the page must show the player on it, the switch counted,
// while playback goes on.
async function pickRendition(page, opts, read) {
  const offered = await page.waitForFunction(() => {
    const pick = document.getElementById('player-level');
    return pick.disabled ? null : [...pick.options].map((o) => ({ value: o.value, label: o.textContent }));
  }, null, { timeout: LOAD_TIMEOUT_MS }).then((handle) => handle.jsonValue())
    .catch(() => { throw new Fail('the player offered no renditions to pick (one rendition, or native HLS?)'); });
  verdict.renditions_offered = offered.map((o) => o.label);
  const wanted = `${opts.pickRendition}p `;
  const choice = offered.find((o) => o.label.startsWith(wanted));
  if (!choice) throw new Fail(`no ${opts.pickRendition}p rendition offered: ${verdict.renditions_offered.join(', ')}`);
  verdict.rendition_before_pick = await page.textContent('#player-rendition');
  const ct0 = (await read()).ct;
  const t0 = Date.now();
  await page.selectOption('#player-level', choice.value);
  log(`picked ${choice.label} (was showing ${verdict.rendition_before_pick}) at currentTime ${ct0.toFixed(2)}`);
  const { shownAt, lastCt, maxFrozen } = await watchPlayback(read, t0, ct0, opts.watchMs, true, async (now) => {
    const shown = await page.textContent('#player-rendition');
    if (!shown.startsWith(wanted)) return false;
    verdict.rendition_shown = shown;
    verdict.rendition_shown_after_ms = now - t0;
    log(`page shows ${shown} ${now - t0} ms after the pick`);
    return true;
  });
  verdict.advanced_after_pick_s = +(lastCt - ct0).toFixed(2);
  verdict.max_frozen_ms_after_pick = maxFrozen;
  if (shownAt === null) throw new Fail(`the page did not show ${opts.pickRendition}p within ${SWITCH_TIMEOUT_MS / 1000} s of the pick (shows ${await page.textContent('#player-rendition')})`);
}

// Samples playback every SAMPLE_MS from `t0` (currentTime `ct0` then) until
// `shows(now)` first says the page shows what is awaited, then for `watchMs`
// more, counted from `t0` or, with `fromShown`, from that moment; gives up
// waiting after SWITCH_TIMEOUT_MS. Returns when it showed (null if never),
// the last currentTime seen and the longest time currentTime stood still.
async function watchPlayback(read, t0, ct0, watchMs, fromShown, shows) {
  let shownAt = null;
  let lastCt = ct0;
  let lastAdvance = Date.now();
  let maxFrozen = 0;
  for (;;) {
    const now = Date.now();
    const x = await read();
    if (x.ct > lastCt + 0.001) { lastCt = x.ct; lastAdvance = now; }
    maxFrozen = Math.max(maxFrozen, now - lastAdvance);
    if (shownAt === null && (await shows(now))) shownAt = now;
    if (shownAt === null && now - t0 > SWITCH_TIMEOUT_MS) break;
    if (shownAt !== null && now - (fromShown ? shownAt : t0) >= watchMs) break;
    await sleep(SAMPLE_MS);
  }
  return { shownAt, lastCt, maxFrozen };
}

// The workers panel's rows as the operator sees them.
function readWorkers(page) {
  return page.evaluate(() => [...document.querySelectorAll('#workers tbody tr')].map((tr) => ({
    worker: tr.dataset.worker, signal: tr.dataset.signal || null, state: tr.dataset.state, text: tr.textContent,
  })));
}

async function readFinalState(page) {
  if (!page) return;
  try {
    const end = await page.evaluate(() => ({
      stalls: Number(document.getElementById('stall-count').textContent),
      errors: window.__console.player.errors,
      transport: window.__console.transport,
      timeline: [...document.querySelectorAll('#timeline li')].slice(0, 8).map((li) => li.textContent),
    }));
    verdict.workers = await readWorkers(page);
    verdict.stalls = end.stalls;
    verdict.player_errors = end.errors;
    verdict.transport = end.transport;
    verdict.timeline = end.timeline;
  } catch (e) {
    log(`final read failed: ${firstLine(e)}`);
  }
}

let code = 0;
let opts = null;
try {
  opts = readCli(process.argv.slice(2));
  const deadline = setTimeout(() => {
    process.stderr.write(`error: gave up after ${opts.timeoutMs / 1000} s\n`);
    process.stdout.write(JSON.stringify({ ...verdict, failed: 'overall timeout' }) + '\n');
    exitCleanly(1);
  }, opts.timeoutMs);
  deadline.unref();
  await main(opts);
} catch (e) {
  const msg = describeFailure(e);
  verdict.failed = msg;
  process.stderr.write(`error: ${msg}\n`);
  code = 1;
}
const page = openPage();
if (page) {
  await readFinalState(page);
  if (opts && opts.screenshot) {
    try {
      fs.mkdirSync(path.dirname(opts.screenshot), { recursive: true });
      await page.screenshot({ path: opts.screenshot, timeout: 15000, fullPage: true });
      verdict.screenshot = opts.screenshot;
      log(`screenshot saved to ${opts.screenshot}`);
    } catch (e) {
      log(`screenshot failed: ${firstLine(e)}`);
    }
  }
}
if (verdict.loaded) process.stdout.write(JSON.stringify(verdict) + '\n');
await exitCleanly(code);
