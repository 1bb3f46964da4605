// What the lab's browser drivers share (hlsjs-player.mjs, console-test.mjs):
// Debian's Chromium launched headless through playwright-core (never a
// downloaded browser) in a fresh temporary profile, command-line parsing
// that fails with one line, and one clean-up (browser, page servers, temp
// profile) whatever ends the run: success, failure, SIGINT/SIGTERM/SIGHUP.
//
//   import { Fail, launchChromium, exitCleanly, ... } from './chromium.mjs';
//
// A driver prints one JSON object on stdout and progress on stderr; a step
// that cannot run throws `Fail`, which the driver reports as one
// "error: ..." line (`describeFailure`) before `exitCleanly(1)`.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

// This folder (lab/web/), where playwright-core is installed.
export const HERE = path.dirname(fileURLToPath(import.meta.url));
// hls.js as the console ships it: the product's copy (web/node_modules),
// so the drivers play with what viewers get.
export const HLS_JS = path.join(HERE, '..', '..', 'web', 'node_modules', 'hls.js', 'dist', 'hls.min.js');
export const DEFAULT_CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run',
];
// How long Chromium may take to start, and a closing browser to go.
const LAUNCH_TIMEOUT_MS = 30000;
const CLOSE_TIMEOUT_MS = 10000;
// A hung clean-up after a signal is abandoned after this long.
const INTERRUPTED_EXIT_MS = 12000;

// A step that could not run: one line for the user, exit 1.
export class Fail extends Error {}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The first line of an error's message (playwright's run on for pages).
export const firstLine = (e) => String(e && e.message !== undefined ? e.message : e).split('\n')[0];

// A progress logger: `[prefix] message` on stderr.
export const logger = (prefix) => (msg) => process.stderr.write(`[${prefix}] ${msg}\n`);

// `promise`, or a `Fail` naming `what` after `ms`.
export function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => { t = setTimeout(() => rej(new Fail(`${what} timed out after ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

// node:util's parseArgs (strict, no positionals), with --help printing
// `usage` and exit 0, and a bad flag a `Fail`.
export function parseCli(argv, options, usage) {
  let values;
  try {
    values = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h', default: false } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    throw new Fail(`${firstLine(e)} (see --help)`);
  }
  if (values.help) {
    process.stdout.write(usage + '\n');
    process.exit(0);
  }
  return values;
}

// `value` as a positive number, or a `Fail` naming `flag`.
export function positiveNumber(value, flag) {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Fail(`bad ${flag} '${value}': must be a positive number`);
  return n;
}

// Everything that must be released, whatever happens.
const held = { servers: [], context: null, userDataDir: null, closing: null };

// Closes `server` (an http.Server) at clean-up.
export function holdServer(server) {
  held.servers.push(server);
  return server;
}

// Launches Chromium at `executable` headless with a fresh temporary profile
// (`tmpPrefix` names it) and returns its context; closed at clean-up.
export async function launchChromium({ executable, viewport, tmpPrefix }) {
  if (!fs.existsSync(executable)) {
    throw new Fail(`Chromium not found at ${executable}: run scripts/setup.sh (apt-get install chromium), or pass --chromium PATH`);
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    throw new Fail(`playwright-core not installed: run scripts/setup.sh (npm ci --prefix lab/web) (${firstLine(e)})`);
  }
  held.userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), tmpPrefix));
  try {
    // launchPersistentContext passes the fresh temp dir as --user-data-dir.
    held.context = await chromium.launchPersistentContext(held.userDataDir, {
      executablePath: executable,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport,
      timeout: LAUNCH_TIMEOUT_MS,
      // Our own signal handlers close the browser, then the servers and the profile.
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
    });
  } catch (e) {
    throw new Fail(`could not launch Chromium at ${executable}: ${firstLine(e)}`);
  }
  return held.context;
}

// The page the driver works in: the context's first, or a new one.
export async function firstPage(context) {
  return context.pages()[0] || context.newPage();
}

// The browser's page, if one is open (for a last read after a failure).
export function openPage() {
  return held.context ? held.context.pages()[0] || null : null;
}

// Closes the browser, the page servers and the temporary profile, once.
export function cleanup() {
  if (held.closing) return held.closing;
  held.closing = (async () => {
    if (held.context) {
      const ctx = held.context;
      held.context = null;
      await Promise.race([ctx.close().catch(() => {}), sleep(CLOSE_TIMEOUT_MS)]);
    }
    for (const srv of held.servers.splice(0)) {
      srv.closeAllConnections?.();
      await new Promise((r) => srv.close(() => r()));
    }
    if (held.userDataDir) {
      try { fs.rmSync(held.userDataDir, { recursive: true, force: true }); } catch { /* best effort */ }
      held.userDataDir = null;
    }
  })();
  return held.closing;
}

// Error text for a failure: a `Fail`'s message, or the whole stack of
// anything unexpected.
export function describeFailure(e) {
  return e instanceof Fail ? e.message : `unexpected failure: ${e && e.stack ? e.stack : e}`;
}

// Cleans up and exits with `code`.
export async function exitCleanly(code) {
  await cleanup();
  process.exit(code);
}

for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
  process.on(sig, () => {
    process.stderr.write(`error: interrupted by ${sig}\n`);
    // Guard against a hung close: leave after a while whatever happens.
    setTimeout(() => process.exit(code), INTERRUPTED_EXIT_MS).unref();
    cleanup().finally(() => process.exit(code));
  });
}
