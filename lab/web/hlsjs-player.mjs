#!/usr/bin/env node
// Real-player judge: plays a live HLS URL with hls.js (or the browser's native
// HLS with --native) in headless Chromium and prints ONE JSON object on stdout
// with stalls, frozen time, errors and startup time. Progress goes to stderr,
// including "[judge] playing <seconds> s of media" about once a second while
// playing.
//
//   node lab/web/hlsjs-player.mjs --url http://127.0.0.1:8002/live01/playlist.m3u8 \
//        --duration 30 [--screenshot out.png] [--native] [--low-latency] [--until-stdin-closes]
//        [--throttle-kbps 600 --throttle-after 6 --throttle-for 14]
//
// Every second while playing the page samples how far behind live the
// picture is (wall clock minus the program date-time of the frame on
// screen): "[judge] behind live <seconds> s" on stderr, all of them in the
// JSON's latency_samples. hls.js's renditions are in level_history (every
// LEVEL_SWITCHED: when, height, declared bit rate, pathway), the hosts
// its fragments came from in frag_hosts and their Content Steering pathway
// each time it changed in pathway_history. With --throttle-kbps the page's
// download rate is capped through the DevTools protocol (Chromium's network
// emulation) from --throttle-after to --throttle-after + --throttle-for
// seconds after the first 'playing'; the JSON's throttle says when exactly.
//
// Exit 0: playback started and was measured (even with stalls or errors).
// Exit 1: could not measure (bad arguments, Chromium or hls.js missing, page
//         failed, playback never started); one "error: ..." line on stderr.
//         If the page ran, the JSON (played=false) is still printed on stdout.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

import {
  DEFAULT_CHROMIUM, Fail, HERE, HLS_JS, describeFailure, exitCleanly, firstLine, firstPage,
  holdServer, launchChromium, logger, parseCli, positiveNumber, sleep, withTimeout,
} from './chromium.mjs';

const PLAYER_HTML = path.join(HERE, 'player.html');

const USAGE = `usage: node hlsjs-player.mjs --url URL [--duration SECONDS] [--screenshot FILE.png] [--native]
                               [--low-latency] [--until-stdin-closes] [--startup-timeout SECONDS]
                               [--throttle-kbps KBPS --throttle-after SECONDS --throttle-for SECONDS]
                               [--chromium PATH]
  --url              live HLS playlist (http or https)
  --duration         seconds of playback to measure after the first 'playing' event (default 30)
  --screenshot       save a PNG of the page (video + live counters) at the end
  --native           play with the browser's native HLS (video.src = url) instead of hls.js
  --low-latency      hls.js in low-latency mode (parts, blocking reloads), catching up at up to 1.5x
                     (lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5); default plain HLS
  --until-stdin-closes  end the measure early (with the same JSON) when stdin closes: a driver that
                     decides the end itself (the latency bench) closes it
  --startup-timeout  seconds to wait for the first 'playing' event (default 20)
  --throttle-kbps    cap the page's downloads at KBPS kilobits per second (Chromium's network emulation,
                     through the DevTools protocol), from --throttle-after seconds after the first
                     'playing' (default 0) for --throttle-for seconds (default: to the end)
  --chromium         Chromium executable (default ${DEFAULT_CHROMIUM})`;

const log = logger('judge');

function readCli(argv) {
  const opts = parseCli(argv, {
    url: { type: 'string' },
    duration: { type: 'string', default: '30' },
    screenshot: { type: 'string' },
    native: { type: 'boolean', default: false },
    'low-latency': { type: 'boolean', default: false },
    'until-stdin-closes': { type: 'boolean', default: false },
    'startup-timeout': { type: 'string', default: '20' },
    'throttle-kbps': { type: 'string' },
    'throttle-after': { type: 'string' },
    'throttle-for': { type: 'string' },
    chromium: { type: 'string', default: DEFAULT_CHROMIUM },
  }, USAGE);
  if (!opts.url) throw new Fail('--url is required (see --help)');
  let u;
  try { u = new URL(opts.url); } catch { throw new Fail(`bad --url '${opts.url}': not a URL`); }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Fail(`bad --url '${opts.url}': must be http or https`);
  const duration = positiveNumber(opts.duration, '--duration');
  const startupTimeout = positiveNumber(opts['startup-timeout'], '--startup-timeout');
  let throttle = null;
  if (opts['throttle-kbps'] !== undefined) {
    const after = opts['throttle-after'] === undefined ? 0 : Number(opts['throttle-after']);
    if (!Number.isFinite(after) || after < 0) throw new Fail(`bad --throttle-after '${opts['throttle-after']}': not a number of seconds >= 0`);
    throttle = {
      kbps: positiveNumber(opts['throttle-kbps'], '--throttle-kbps'),
      afterMs: Math.round(after * 1000),
      forMs: opts['throttle-for'] === undefined ? null : Math.round(positiveNumber(opts['throttle-for'], '--throttle-for') * 1000),
    };
  } else if (opts['throttle-after'] !== undefined || opts['throttle-for'] !== undefined) {
    throw new Fail('--throttle-after and --throttle-for need --throttle-kbps');
  }
  if (throttle && opts.native) throw new Fail('--throttle-kbps is for hls.js (it reads level switches), not --native');
  return {
    url: u.href,
    durationMs: Math.round(duration * 1000),
    startupTimeoutMs: Math.round(startupTimeout * 1000),
    screenshot: opts.screenshot ? path.resolve(opts.screenshot) : null,
    native: opts.native,
    lowLatency: opts['low-latency'],
    untilStdinCloses: opts['until-stdin-closes'],
    throttle,
    chromium: opts.chromium,
  };
}

// Tiny static server for the page and hls.js (never fetched from the internet).
function startServer() {
  const files = {
    '/player.html': { file: PLAYER_HTML, type: 'text/html; charset=utf-8' },
    '/hls.min.js': { file: HLS_JS, type: 'text/javascript; charset=utf-8' },
  };
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://127.0.0.1');
    const f = files[pathname];
    if (!f || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(pathname === '/favicon.ico' ? 204 : 404, { 'Cache-Control': 'no-store' });
      res.end();
      return;
    }
    fs.readFile(f.file, (err, buf) => {
      if (err) { res.writeHead(500); res.end(String(err)); return; }
      res.writeHead(200, { 'Content-Type': f.type, 'Content-Length': buf.length, 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : buf);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(holdServer(server)));
  });
}

// Caps (or, with kbps null, uncaps) the page's download rate with
// Chromium's network emulation, then marks the moment in the page so the
// verdict's times share one clock.
async function setThrottle(cdp, page, kbps) {
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    downloadThroughput: kbps === null ? -1 : (kbps * 1000) / 8,
    uploadThroughput: -1,
  });
  const at = await page.evaluate((on) => window.__judgeMark(on), kbps !== null);
  log(kbps === null ? `throttle lifted at ${at} ms` : `throttled to ${kbps} kbit/s at ${at} ms`);
  return at;
}

async function main() {
  const opts = readCli(process.argv.slice(2));

  if (!fs.existsSync(HLS_JS)) throw new Fail(`hls.js not found at ${HLS_JS}: run scripts/setup.sh (npm ci --prefix web)`);
  if (!fs.existsSync(PLAYER_HTML)) throw new Fail(`player page not found at ${PLAYER_HTML}`);

  const server = await startServer();
  const port = server.address().port;
  const pageUrl = `http://127.0.0.1:${port}/player.html?` +
    new URLSearchParams({ url: opts.url, native: opts.native ? '1' : '0', ll: opts.lowLatency ? '1' : '0' }).toString();
  const mode = opts.native ? 'native HLS' : `hls.js${opts.lowLatency ? ' (low latency)' : ''}`;
  log(`page server on http://127.0.0.1:${port}/ ; playing ${opts.url} with ${mode}`);

  const context = await launchChromium({
    executable: opts.chromium,
    viewport: { width: 660, height: 410 },
    tmpPrefix: 'nonstop-judge-chromium-',
  });
  let browserGone = false;
  context.on('close', () => { browserGone = true; });

  const page = await firstPage(context);
  page.on('pageerror', (e) => log(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') log(`console.${m.type()}: ${m.text()}`);
  });
  page.on('crash', () => { browserGone = true; log('page crashed'); });

  try {
    const resp = await page.goto(pageUrl, { waitUntil: 'load', timeout: 20000 });
    if (!resp || !resp.ok()) throw new Error(`HTTP ${resp ? resp.status() : 'no response'}`);
  } catch (e) {
    throw new Fail(`could not open the player page: ${firstLine(e)}`);
  }

  const info = await page.evaluate(() => ({ hls: window.__judge && window.__judge.hls_version, mse: window.__judge && window.__judge.mse_supported }));
  if (!opts.native) log(`hls.js ${info.hls}, MediaSource supported: ${info.mse}`);

  // Whoever runs this may end the measure early by closing stdin.
  let stopAsked = false;
  if (opts.untilStdinCloses) {
    const stop = () => { if (!stopAsked) log('stdin closed: ending the measure'); stopAsked = true; };
    process.stdin.on('end', stop);
    process.stdin.on('close', stop);
    process.stdin.on('error', stop);
    process.stdin.resume();
  }

  // The throttle, driven from here: the DevTools protocol session is Node's.
  let cdp = null;
  const throttle = opts.throttle ? { kbps: opts.throttle.kbps, on_ms: null, off_ms: null } : null;
  if (opts.throttle) {
    cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
  }

  // Poll the page: wait for the first 'playing', then measure --duration.
  let startFailure = null;
  let lastProgress = 0;
  let firstCurrentTime = null;
  for (;;) {
    if (browserGone) throw new Fail('Chromium closed or crashed during the run');
    const s = await withTimeout(page.evaluate(() => window.__judgeSnapshot()), 10000, 'page poll');
    for (const ev of s.events) log(ev);
    if (!s.started) {
      if (s.fatal_before_start) { startFailure = 'a fatal player error happened before playback started'; break; }
      if (s.since_load_ms === null) { startFailure = 'the player did not start loading'; break; }
      if (s.since_load_ms >= opts.startupTimeoutMs) { startFailure = `no 'playing' event within ${opts.startupTimeoutMs / 1000} s`; break; }
      if (stopAsked) { startFailure = 'asked to stop before playback started'; break; }
      await sleep(250);
      continue;
    }
    // One line per poll, so whoever drives this script (lab/tests/browser.rs)
    // can inject a fault once the viewer is watching, not after a guessed sleep.
    if (firstCurrentTime === null) firstCurrentTime = s.current_time;
    log(`playing ${Math.max(0, s.current_time - firstCurrentTime).toFixed(3)} s of media`);
    if (s.latency_s !== null) log(`behind live ${s.latency_s.toFixed(3)} s`);
    if (s.elapsed_ms - lastProgress >= 5000) {
      lastProgress = s.elapsed_ms;
      log(`t=${(s.elapsed_ms / 1000).toFixed(1)}s currentTime=${s.current_time.toFixed(2)} stalls=${s.stalls}${s.stalled ? ' (stalled now)' : ''} errors=${s.errors} fatal=${s.fatal_errors}`);
    }
    let wake = 1000;
    if (opts.throttle) {
      const { afterMs, forMs } = opts.throttle;
      if (throttle.on_ms === null && s.elapsed_ms >= afterMs) throttle.on_ms = await setThrottle(cdp, page, throttle.kbps);
      else if (throttle.on_ms !== null && throttle.off_ms === null && forMs !== null && s.elapsed_ms >= afterMs + forMs) throttle.off_ms = await setThrottle(cdp, page, null);
      // Poll finer while a throttle change is due, so it lands on time.
      const due = throttle.on_ms === null ? afterMs : (throttle.off_ms === null && forMs !== null ? afterMs + forMs : null);
      if (due !== null) wake = Math.max(50, Math.min(wake, due - s.elapsed_ms));
    }
    const left = opts.durationMs - s.elapsed_ms;
    if (left <= 0 || stopAsked) break;
    await sleep(Math.min(wake, left));
  }

  const r = await withTimeout(page.evaluate(() => window.__judgeFinish()), 10000, 'final read');
  for (const ev of (await page.evaluate(() => window.__judgeSnapshot()).catch(() => ({ events: [] }))).events) log(ev);

  if (opts.screenshot) {
    try {
      await page.screenshot({ path: opts.screenshot, timeout: 15000 });
      log(`screenshot saved to ${opts.screenshot}`);
    } catch (e) {
      log(`screenshot failed: ${firstLine(e)}`);
    }
  }

  const result = {
    player: r.player,
    url: opts.url,
    duration_ms: r.duration_ms,
    startup_ms: r.startup_ms,
    stalls: r.stalls,
    stall_ms: r.stall_ms,
    max_frozen_ms: r.max_frozen_ms,
    errors: r.errors,
    fatal_errors: r.fatal_errors,
    error_details: r.error_details,
    current_time_end: r.current_time_end,
    played: r.played,
    // extras
    first_advance_ms: r.first_advance_ms,
    preroll_waits: r.preroll_waits,
    errors_before_start: r.errors_before_start,
    current_time_start: r.current_time_start,
    played_s: r.played_s,
    buffer_ahead_end_s: r.buffer_ahead_end_s,
    latency_end_s: r.latency_end_s,
    dropped_frames: r.dropped_frames,
    total_frames: r.total_frames,
    video_width: r.video_width,
    video_height: r.video_height,
    last_error: r.last_error,
    slowest_playlist: r.slowest_playlist,
    ended: r.ended,
    hls_version: r.hls_version,
    native_supported: r.native_supported,
    low_latency: r.low_latency,
    target_latency_s: r.target_latency_s,
    level_switches: r.level_switches,
    level_history: r.level_history,
    frag_hosts: r.frag_hosts,
    pathway_history: r.pathway_history,
    throttle,
    latency_samples: r.latency_samples,
    browser: context.browser()?.version() ?? null,
  };
  process.stdout.write(JSON.stringify(result) + '\n');

  if (startFailure) {
    const last = r.last_error ? ` (last error: ${r.last_error.details}${r.last_error.extra ? ' ' + r.last_error.extra : ''})` : '';
    throw new Fail(`playback did not start: ${startFailure}${last}`);
  }
  return 0;
}

let code = 0;
try {
  code = await main();
} catch (e) {
  process.stderr.write(`error: ${describeFailure(e)}\n`);
  code = 1;
}
await exitCleanly(code);
