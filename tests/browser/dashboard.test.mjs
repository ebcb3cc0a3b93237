// Real-browser test of the Instances dashboard served at GET /.
//
// Starts the real `rollcall serve` binary on a free loopback port, drives
// Debian's chromium through playwright-core, and sends presence over the real
// WebSocket handshake (docs/protocol.md §3, §5.2). Run with `node --test` (see run.sh).
//
// Env: ROLLCALL_BIN (default ../../target/debug/rollcall relative to this file),
// CHROMIUM (default /usr/bin/chromium). Screenshots go to ./artifacts/ (gitignored).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.ROLLCALL_BIN
  ? path.resolve(process.env.ROLLCALL_BIN) // relative to the current directory
  : path.resolve(HERE, '../../target/debug/rollcall');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(HERE, 'artifacts');
const DASHBOARD_HTML = path.resolve(HERE, '../../src/http/dashboard.html');
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
];
/** Generous for a 2-core CI machine; every wait polls and returns as soon as it holds. */
const WAIT_MS = 10_000;
const ROWS = '#list .row:not([hidden])';

let browser;

before(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
});

after(async () => {
  await browser?.close();
});

// ---------- server ----------

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts `rollcall serve` and resolves once GET /healthz answers 200. */
async function startServer(extraArgs = []) {
  assert.ok(fs.existsSync(BIN), `rollcall binary not found at ${BIN}: build it (cargo build) or set ROLLCALL_BIN`);
  const port = await freePort();
  const args = ['serve', '--bind', `127.0.0.1:${port}`, ...extraArgs];
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (d) => { log = (log + d).slice(-32_000); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exit = null;
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => { exit = { code, signal }; resolve(exit); }));

  const server = {
    port,
    base: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}/`,
    log: () => log,
    async kill() {
      if (!exit) child.kill('SIGKILL');
      await exited;
    },
  };

  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exit) throw new Error(`${BIN} ${args.join(' ')} exited early (${JSON.stringify(exit)}):\n${log}`);
    try {
      const res = await fetch(`${server.base}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return server;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      await server.kill();
      throw new Error(`GET /healthz did not answer 200 within 20 s:\n${log}`);
    }
    await sleep(100);
  }
}

// ---------- WebSocket beacon client ----------

/** A WebSocket client that buffers frames so none is missed between waits. */
async function openClient(url) {
  const ws = new WebSocket(url);
  const frames = [];
  const waiters = new Set();
  ws.on('message', (data) => {
    const frame = JSON.parse(String(data));
    frames.push(frame);
    for (const w of waiters) w();
  });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });

  function next(pred, what) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const i = frames.findIndex(pred);
        if (i < 0) return;
        cleanup();
        resolve(frames.splice(i, 1)[0]);
      };
      const onClose = () => { cleanup(); reject(new Error(`socket closed while waiting for ${what}`)); };
      const timer = setTimeout(() => { cleanup(); reject(new Error(`no ${what} within ${WAIT_MS} ms`)); }, WAIT_MS);
      function cleanup() { clearTimeout(timer); waiters.delete(check); ws.off('close', onClose); }
      waiters.add(check);
      ws.on('close', onClose);
      check();
    });
  }

  async function request(frame) {
    ws.send(JSON.stringify(frame));
    const res = await next((f) => f.type === 'res' && f.id === frame.id, `reply to ${frame.method}`);
    assert.equal(res.ok, true, `${frame.method} failed: ${JSON.stringify(res.error)}`);
    return res;
  }

  async function close() {
    if (ws.readyState === WebSocket.CLOSED) return;
    const closed = new Promise((resolve) => ws.once('close', resolve));
    ws.close(1000);
    await closed;
  }

  return { next, request, close };
}

// ---------- page helpers ----------

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 }, colorScheme: 'light' });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.errors = errors;
  return page;
}

/** Polls fn until it returns a truthy value. */
async function until(fn, what, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await sleep(100);
  }
}

const text = (page, sel) => page.locator(sel).first().textContent({ timeout: WAIT_MS }).then((t) => t.trim());

async function visibleKeys(page) {
  return page.$$eval(ROWS, (rows) => rows
    .sort((a, b) => Number(a.dataset.index) - Number(b.dataset.index))
    .map((r) => r.dataset.key));
}

async function counts(page) {
  return page.evaluate(() => Object.fromEntries(['active', 'idle', 'stale', 'total']
    .map((k) => [k, Number(document.getElementById(`count-${k}`).textContent)])));
}

/** Decodes a PNG in the browser and reports how varied its pixels are. */
async function pixelStats(png) {
  const page = await browser.newPage();
  try {
    return await page.evaluate(async (b64) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
      const colours = new Map();
      for (let i = 0; i < data.length; i += 4 * 7) {
        const c = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
        colours.set(c, (colours.get(c) || 0) + 1);
      }
      const samples = Math.ceil(data.length / 28);
      const top = Math.max(...colours.values());
      return { width: canvas.width, height: canvas.height, distinct: colours.size, dominantShare: top / samples };
    }, png.toString('base64'));
  } finally {
    await page.close();
  }
}

/** On failure, keeps a screenshot and the server's log next to the error. */
async function diagnose(name, page, server, fn) {
  try {
    await fn();
  } catch (err) {
    const shot = path.join(ARTIFACTS, `failure-${name}.png`);
    await page?.screenshot({ path: shot }).catch(() => {});
    err.message += `\n--- screenshot: ${shot}\n--- page errors: ${JSON.stringify(page?.errors ?? [])}` +
      (server ? `\n--- server log (tail):\n${server.log().slice(-4000)}` : '');
    throw err;
  }
}

// ---------- tests ----------

test('dashboard shows the gateway first, beacons live, filters, and flags a dropped stream', { timeout: 90_000 }, async (t) => {
  const server = await startServer();
  t.after(() => server.kill());
  const page = await newPage();
  t.after(() => page.context().close());

  await diagnose('live', page, server, async () => {
    await page.goto(`${server.base}/`);

    // The gateway's own row is pinned first and is Active while the stream is up.
    const first = page.locator('#list .row[data-index="0"]');
    await first.waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.equal(await first.getAttribute('data-gateway'), 'true', 'first row is the gateway');
    assert.equal((await first.locator('.mode').textContent()).trim(), 'gateway');
    await until(async () => (await first.locator('.status').textContent()) === 'Active', 'gateway row Active');
    assert.notEqual(await text(page, '#presence-version'), '—', 'presence version shown');
    assert.ok(await page.locator('#stream-banner').isHidden(), 'no banner while connected');
    const before = await counts(page);
    assert.ok(before.total >= 1 && before.active >= 1, `initial counts ${JSON.stringify(before)}`);

    // Marker to prove the updates below arrive without a reload.
    await page.evaluate(() => { window.__sameDocument = true; });

    // A real client: challenge, connect, then a system-event beacon.
    const client = await openClient(server.ws);
    const challenge = await client.next((f) => f.type === 'event' && f.event === 'connect.challenge', 'connect.challenge');
    assert.ok(challenge.payload?.nonce, 'challenge carries a nonce');
    await client.request({
      type: 'req', id: 'c1', method: 'connect',
      params: {
        minProtocol: 3, maxProtocol: 4,
        client: { id: 'browser-test', version: '1.0.0', platform: 'linux', mode: 'backend', instanceId: 'beacon-1' },
        role: 'operator', scopes: ['operator.admin', 'operator.read'],
      },
    });
    await client.request({
      type: 'req', id: 'e1', method: 'system-event',
      params: {
        text: 'Node: mac-mini (10.0.0.7) · app 2.1.0 · last input 3 s ago · mode ui · reason periodic',
        instanceId: 'mac-mini-1',
      },
    });

    // The beacon's row appears live.
    const mac = page.locator('#list .row[data-key="mac-mini-1"]');
    await mac.waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.equal((await mac.locator('.host').textContent()).trim(), 'mac-mini');
    assert.equal((await mac.locator('.ip').textContent()).trim(), '10.0.0.7');
    assert.equal((await mac.locator('.ver').textContent()).trim(), '2.1.0');
    assert.equal((await mac.locator('.mode').textContent()).trim(), 'ui');
    assert.match(await mac.locator('.last').textContent(), /^3s ago$/);
    assert.match(await mac.locator('.age').textContent(), /ago · Heartbeat$/);
    assert.equal((await mac.locator('.status').textContent()).trim(), 'Active');
    assert.match(await mac.getAttribute('title'), /^Node: mac-mini \(10\.0\.0\.7\)/, 'hover text is the entry text');

    // The beacon connection's own entry (tracked mode "backend") is listed too.
    const own = page.locator('#list .row[data-key="beacon-1"]');
    await own.waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.equal((await own.locator('.host').textContent()).trim(), 'browser-test');
    assert.match(await own.locator('.age').textContent(), / · Connect$/);

    // Counts follow, and the gateway stays pinned first.
    await until(async () => (await counts(page)).total === before.total + 2, 'count-total to grow by 2');
    const after = await counts(page);
    assert.equal(after.active, before.active + 2, `counts ${JSON.stringify(after)}`);
    assert.equal(after.active + after.idle + after.stale, after.total);
    assert.equal((await visibleKeys(page))[0], await first.getAttribute('data-key'));
    assert.equal(await page.evaluate(() => window.__sameDocument), true, 'page was not reloaded');

    // The filter narrows by host, ip, mode and instanceId, case-insensitively.
    await page.fill('#filter', 'MAC-MINI');
    await until(async () => (await visibleKeys(page)).join() === 'mac-mini-1', 'filter by host');
    await page.fill('#filter', '10.0.0.7');
    await until(async () => (await visibleKeys(page)).join() === 'mac-mini-1', 'filter by ip');
    await page.fill('#filter', 'backend');
    await until(async () => (await visibleKeys(page)).join() === 'beacon-1', 'filter by mode');
    await page.fill('#filter', 'Beacon-');
    await until(async () => (await visibleKeys(page)).join() === 'beacon-1', 'filter by instanceId');
    await page.fill('#filter', 'no-such-instance');
    await until(async () => (await visibleKeys(page)).length === 0, 'filter with no match');
    assert.ok(await page.locator('#empty').isVisible(), 'empty state shown');
    await page.fill('#filter', '');
    await until(async () => (await visibleKeys(page)).length === after.total, 'filter cleared');

    // A disconnect shows up live as well.
    await client.close();
    await until(async () => / · Disconnect$/.test(await own.locator('.age').textContent()), 'beacon-1 to show Disconnect');

    // Screenshot, and check it is not blank.
    const shotPath = path.join(ARTIFACTS, 'dashboard.png');
    const png = await page.screenshot({ path: shotPath });
    const blank = await (async () => {
      const p = await browser.newPage({ viewport: { width: 1280, height: 720 } });
      try { await p.goto('about:blank'); return await p.screenshot(); } finally { await p.close(); }
    })();
    assert.ok(png.length > 20_000, `screenshot is ${png.length} bytes`);
    assert.ok(png.length > 4 * blank.length, `screenshot (${png.length} B) vs blank page (${blank.length} B)`);
    const stats = await pixelStats(png);
    assert.equal(stats.width, 1280);
    assert.ok(stats.distinct > 30, `only ${stats.distinct} distinct colours`);
    assert.ok(stats.dominantShare < 0.97, `one colour covers ${(stats.dominantShare * 100).toFixed(1)}% of the shot`);

    // Kill the server: the page says so.
    await server.kill();
    await page.locator('#stream-banner').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.match(await page.locator('#stream-banner').textContent(), /Reconnecting/);
    await until(async () => (await page.locator('#doctor').getAttribute('data-state')) === 'error', 'the doctor shows it cannot be asked');
    assert.equal(await text(page, '#doctor-label'), 'doctor: unavailable');
    assert.equal((await visibleKeys(page)).length, after.total, 'the list stays');
    assert.deepEqual(page.errors, [], 'no uncaught page errors');
  });
});

test('a token-protected gateway asks for a token and accepts #token=', { timeout: 60_000 }, async (t) => {
  const server = await startServer(['--token', 'secret']);
  t.after(() => server.kill());

  // Premise: without the token the API answers 401, with it 200.
  const denied = await fetch(`${server.base}/v1/presence/stream`, { signal: AbortSignal.timeout(WAIT_MS) });
  assert.equal(denied.status, 401);
  await denied.body?.cancel();
  const page = await newPage();
  t.after(() => page.context().close());
  const streamRequests = [];
  const doctorRequests = [];
  page.on('request', (req) => {
    const { pathname } = new URL(req.url());
    const into = pathname === '/v1/presence/stream' ? streamRequests : pathname === '/v1/presence/doctor' ? doctorRequests : null;
    into?.push(req.allHeaders().then((h) => ({ url: req.url(), auth: h.authorization })));
  });

  await diagnose('token-form', page, server, async () => {
    await page.goto(`${server.base}/`);
    await page.locator('#token-form').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.equal(await page.locator(ROWS).count(), 0, 'no rows before a token is given');
    assert.ok(await page.locator('#stream-banner').isHidden(), 'a missing token is not a dropped stream');

    // A wrong token is refused and the form stays.
    await page.fill('#token-input', 'wrong');
    await page.press('#token-input', 'Enter');
    await page.locator('#token-error').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.ok(await page.locator('#token-form').isVisible());

    // The right one loads the rows.
    await page.fill('#token-input', 'secret');
    await page.press('#token-input', 'Enter');
    const first = page.locator('#list .row[data-index="0"]');
    await first.waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.equal(await first.getAttribute('data-gateway'), 'true');
    assert.ok(await page.locator('#token-form').isHidden());

    // The stream's fetch sends the token in the Authorization header only.
    const streams = await Promise.all(streamRequests);
    assert.ok(streams.length >= 3, `stream requests: ${JSON.stringify(streams)}`);
    for (const s of streams) assert.ok(!new URL(s.url).searchParams.has('token'), `token in the URL: ${s.url}`);
    assert.equal(streams[0].auth, undefined, 'no token, no header');
    assert.equal(streams.at(-1).auth, 'Bearer secret');

    // The doctor is asked with the same header, and answers.
    await until(async () => (await page.locator('#doctor').getAttribute('data-state')) === 'clean', 'the doctor answers with the token');
    const doctors = await Promise.all(doctorRequests);
    assert.ok(doctors.length >= 1);
    for (const d of doctors) {
      assert.equal(d.auth, 'Bearer secret', 'the doctor is only asked with the token');
      assert.ok(!new URL(d.url).searchParams.has('token'), `token in the URL: ${d.url}`);
    }
  });

  const page2 = await newPage();
  t.after(() => page2.context().close());
  await diagnose('token-fragment', page2, server, async () => {
    await page2.goto(`${server.base}/#token=secret`);
    const first = page2.locator('#list .row[data-index="0"]');
    await first.waitFor({ state: 'visible', timeout: WAIT_MS });
    await until(async () => (await first.locator('.status').textContent()) === 'Active', 'gateway row Active');
    assert.ok(await page2.locator('#token-form').isHidden());
    assert.ok(!page2.url().includes('token'), `token left in the address bar: ${page2.url()}`);
    assert.equal(await page2.evaluate(() => sessionStorage.getItem('rollcall.token')), 'secret');

    // A reload keeps working from sessionStorage.
    await page2.reload();
    await page2.locator('#list .row[data-index="0"]').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.ok(await page2.locator('#token-form').isHidden());
    assert.deepEqual(page2.errors, [], 'no uncaught page errors');
  });
});

test('the page pins the gateway, escapes text, corrects clock skew and virtualizes 10,000 rows', { timeout: 60_000 }, async (t) => {
  // No server here: the page file itself is served, and the stream is answered
  // with a crafted list whose order and clock the test controls.
  const html = fs.readFileSync(DASHBOARD_HTML, 'utf8');
  const serverTime = Date.now() + 3_600_000; // the server's clock runs an hour ahead
  const hostile = '<img src=x onerror="window.__injected=1">';
  const presence = [
    { instanceId: 'Node-A', host: hostile, ip: '10.0.0.1', mode: 'ui', reason: 'periodic', lastInputSeconds: 75, text: '<b>t</b>', ts: serverTime - 30_000 },
    { instanceId: 'GW', host: 'gw-host', mode: 'gateway', reason: 'self', text: 'Gateway: gw-host', ts: serverTime - 1_000 },
    { instanceId: 'idle-1', reason: 'launch', ts: serverTime - 200_000 },
    { instanceId: 'stale-1', host: 'old', reason: 'something-new', ts: serverTime - 400_000 },
  ];
  for (let i = 0; i < 10_000; i++) {
    presence.push({ instanceId: `filler-${i}`, host: `filler-${i}`, ip: `10.1.${i >> 8}.${i & 255}`, mode: 'node', reason: 'periodic', ts: serverTime - 400_000 - i });
  }
  const body = `: keep-alive\n\nevent: presence\ndata: ${JSON.stringify({ version: 42, serverTime, presence })}\n\n`;
  let streams = 0;

  const page = await newPage();
  t.after(() => page.context().close());
  await page.route('http://rollcall.test/**', (route) => {
    const url = new URL(route.request().url());
    if (url.pathname === '/') return route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: html });
    if (url.pathname === '/v1/presence/stream') {
      // The first stream delivers the list and ends; later reconnects fail, so the list stays put.
      streams++;
      if (streams === 1) return route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }, body });
      return route.fulfill({ status: 503, body: 'down' });
    }
    return route.fulfill({ status: 404, body: 'not found' });
  });
  await page.addInitScript(() => {
    window.__longTasks = [];
    new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longTasks.push(e.duration); })
      .observe({ type: 'longtask', buffered: true });
  });

  await diagnose('crafted', page, null, async () => {
    await page.goto('http://rollcall.test/');
    await until(async () => (await text(page, '#count-total')) === '10004', 'all 10,004 entries counted');
    assert.equal(await text(page, '#presence-version'), '42');

    // Gateway pinned first, then the server's order.
    assert.deepEqual((await visibleKeys(page)).slice(0, 5), ['gw', 'node-a', 'idle-1', 'stale-1', 'filler-0']);

    // Entry text is shown as text, never parsed as markup.
    const a = page.locator('#list .row[data-key="node-a"]');
    assert.equal(await a.locator('.host').textContent(), hostile);
    assert.equal(await page.locator('#list img').count(), 0);
    assert.equal(await page.evaluate(() => window.__injected), undefined);
    assert.equal(await a.getAttribute('title'), '<b>t</b>');
    assert.equal(await a.locator('.last').textContent(), '1m 15s ago');

    // Ages use the server's clock: with the local clock, everything would look Active.
    assert.equal(await a.locator('.status').textContent(), 'Active');
    const idle = page.locator('#list .row[data-key="idle-1"]');
    assert.equal(await idle.locator('.status').textContent(), 'Idle');
    assert.match(await idle.locator('.age').textContent(), /^3m 2\ds ago · Launch$/);
    assert.equal(await idle.locator('.host').textContent(), 'unknown host');
    const stale = page.locator('#list .row[data-key="stale-1"]');
    assert.equal(await stale.locator('.status').textContent(), 'Stale');
    assert.match(await stale.locator('.age').textContent(), / · something-new$/, 'unknown reasons are shown raw');
    const c = await counts(page);
    assert.equal(c.idle, 1);
    assert.equal(c.stale, 10_001);
    assert.ok(c.active >= 1 && c.active <= 2, `active ${c.active}`); // the gateway may count as Active or not once the stream ended

    // Only the visible rows are in the DOM, wherever the list is scrolled.
    assert.ok(await page.locator('#list .row').count() < 100, 'rows are virtualized');
    await page.evaluate(() => { const l = document.getElementById('list'); l.scrollTop = l.scrollHeight; });
    await until(async () => (await visibleKeys(page)).at(-1) === 'filler-9999', 'last row rendered after scrolling');
    assert.ok(await page.locator('#list .row').count() < 100, 'still virtualized after scrolling');
    const lastBox = await page.locator('#list .row[data-key="filler-9999"]').boundingBox();
    const listBox = await page.locator('#list').boundingBox();
    assert.ok(lastBox.y + lastBox.height <= listBox.y + listBox.height + 1, 'last row fits inside the scroller');

    // Filtering 10,000 rows is immediate.
    await page.fill('#filter', 'FILLER-999');
    await until(async () => (await text(page, '#count-shown')).startsWith('11 of 10004'), 'filter count');
    await page.fill('#filter', '');

    // The doctor is not there (404): the header says so, the list is unaffected.
    await until(async () => (await page.locator('#doctor').getAttribute('data-state')) === 'error', 'doctor error state');
    assert.match(await page.locator('#doctor').getAttribute('title'), /HTTP 404/);
    assert.equal(await page.locator('#list .row .why:not([hidden])').count(), 0, 'no markers without a report');

    // Ticks keep running without freezing the tab.
    await sleep(2_500);
    const longest = await page.evaluate(() => Math.max(0, ...window.__longTasks));
    assert.ok(longest < 1_000, `a task took ${longest} ms`);
    assert.deepEqual(page.errors, [], 'no uncaught page errors');
  });
});

test('the doctor marks duplicated, silent and departed rows, and its panel says why', { timeout: 120_000 }, async (t) => {
  const server = await startServer(['--stale-after', '1s']);
  t.after(() => server.kill());
  const page = await newPage();
  t.after(() => page.context().close());
  const doctorFetches = [];
  page.on('request', (req) => {
    if (new URL(req.url()).pathname === '/v1/presence/doctor') doctorFetches.push(Date.now());
  });

  /** A real client through the whole handshake; resolves with its hello-ok connId. */
  async function join(client, scopes = ['operator.read']) {
    const c = await openClient(server.ws);
    t.after(() => c.close());
    await c.next((f) => f.type === 'event' && f.event === 'connect.challenge', 'connect.challenge');
    const res = await c.request({
      type: 'req', id: 'connect', method: 'connect',
      params: { minProtocol: 3, maxProtocol: 4, client: { version: '1.0.0', platform: 'linux', ...client }, role: 'operator', scopes },
    });
    const connId = res.payload?.server?.connId;
    assert.match(connId ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'hello-ok names the connection');
    return { ...c, connId };
  }

  const panel = page.locator('#why');
  const doctorBadge = page.locator('#doctor');
  const marker = (row) => row.locator('.why');
  /** Waits for the row's marker to show `kind`, opens its panel, and waits until the panel says `want`. */
  async function why(row, kind, want, what) {
    await until(async () => (await marker(row).isVisible()) && (await marker(row).textContent()).includes(kind), `${what}: a "${kind}" marker`);
    await marker(row).click();
    await panel.waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.equal(await marker(row).getAttribute('aria-expanded'), 'true', `${what}: the marker says its panel is open`);
    return until(async () => {
      const text = await panel.textContent();
      return want.every((w) => (w instanceof RegExp ? w.test(text) : text.includes(w))) && text;
    }, `${what}: the panel to say ${want.join(' / ')}`);
  }
  async function closeWith(how) {
    if (how === 'Escape') await page.keyboard.press('Escape'); else await page.click('#why-close');
    await panel.waitFor({ state: 'hidden', timeout: WAIT_MS });
  }

  await diagnose('doctor', page, server, async () => {
    await page.goto(`${server.base}/`);
    const gateway = page.locator('#list .row[data-index="0"]');
    await gateway.waitFor({ state: 'visible', timeout: WAIT_MS });
    // Nothing but the gateway: nothing to find.
    await until(async () => (await doctorBadge.getAttribute('data-state')) === 'clean', 'doctor: no findings');
    assert.match(await doctorBadge.textContent(), /^doctor: no findings · cap 0\/200$/);
    assert.ok(await marker(gateway).isHidden(), 'the gateway row has no marker');

    // 1. A ui client without client.instanceId reconnects: its second connection makes a second row.
    const display = 'Dup <img src=x onerror="window.__injected=1">';
    const first = await join({ id: 'dup-app', mode: 'ui', displayName: display });
    await first.close();
    const second = await join({ id: 'dup-app', mode: 'ui', displayName: display });
    assert.notEqual(first.connId, second.connId);
    const dupRows = page.locator(ROWS).filter({ has: page.locator('.host', { hasText: 'Dup <img' }) });
    const newer = dupRows.filter({ has: page.locator('.age', { hasText: /· Connect$/ }) });
    const older = dupRows.filter({ has: page.locator('.age', { hasText: /· Disconnect$/ }) });
    let said = await why(newer, 'duplicate', ['sends no client.instanceId', second.connId], 'the newer duplicate');
    assert.equal(await text(page, '#why-sub'), second.connId, 'the panel is about the newer row, keyed by its connection id');
    assert.match(said, /Key fromthe connection id \(the connect sent no client\.instanceId or device\.id\)/);
    assert.match(said, /ConnectionOpen: a connection for this row is open/);
    assert.ok(said.includes(display), 'the client\'s display name is shown as text');
    assert.equal(await page.locator('#why img').count(), 0, 'server text is never parsed as markup');
    assert.equal(await page.evaluate(() => window.__injected), undefined);
    assert.match(await page.locator('#why .writes').textContent(), new RegExp(`^Connect from connection ${second.connId}`));
    await closeWith('Escape');
    assert.equal(await page.evaluate(() => document.activeElement?.classList.contains('why')), true, 'focus goes back to the marker');
    assert.equal(await marker(newer).getAttribute('aria-expanded'), 'false');
    // The older row is the other half of the duplicate, and it is gone.
    await until(async () => /duplicate · gone/.test(await marker(older).textContent()), 'the older duplicate marked duplicate and gone');

    // 2. A client whose beacons carry another instanceId than its connect.
    const bee = await join({ id: 'bee-app', mode: 'ui', displayName: 'Bee', instanceId: 'bee-connect' }, ['operator.admin', 'operator.read']);
    await bee.request({
      type: 'req', id: 'beacon', method: 'system-event',
      params: { text: 'Node: bee-host (10.0.0.42) · app 3.0.0 · last input 2 s ago · mode ui · reason periodic', instanceId: 'bee-beacon' },
    });
    const beeBeacon = page.locator('#list .row[data-key="bee-beacon"]');
    said = await why(beeBeacon, 'duplicate', ['beacons use instanceId bee-beacon while its connect used bee-connect', bee.connId], 'the beacon row');
    assert.match(said, /Key fromthe beacon's instanceId/);
    assert.match(said, /ConnectionNone open/, 'no connection is keyed by the beacon row');
    assert.match(await page.locator('#why .writes').textContent(), new RegExp(`^Beacon from connection ${bee.connId} · key from beacon instanceId · \\d+s ago$`));
    await page.screenshot({ path: path.join(ARTIFACTS, 'doctor-panel.png') });
    await closeWith('button');
    assert.ok(await page.locator('#list .row[data-key="bee-connect"] .why').isVisible(), 'the connect row is marked too');

    // 3. A connected client that beacons once, then stays silent for longer
    // than --stale-after. (A read-only client that never beacons is not
    // stale: its row ages by design, and the doctor leaves it alone.)
    const quiet = await join({ id: 'quiet-app', mode: 'ui', displayName: 'Quiet', instanceId: 'quiet-1' }, ['operator.admin', 'operator.read']);
    await quiet.request({ type: 'req', id: 'beacon', method: 'system-event', params: { text: 'quiet once', instanceId: 'quiet-1' } });
    const quietRow = page.locator('#list .row[data-key="quiet-1"]');
    await quietRow.waitFor({ state: 'visible', timeout: WAIT_MS });
    said = await why(quietRow, 'stale', ['stopped sending the beacons it used to send', quiet.connId], 'the silent row');
    assert.match(said, /ConnectionOpen: a connection for this row is open/);
    assert.ok(!(await marker(quietRow).textContent()).includes('gone'));
    await closeWith('Escape');

    // 4. A client that disconnects: its row stays until the TTL.
    const leaver = await join({ id: 'leaver-app', mode: 'ui', displayName: 'Leaver', instanceId: 'leaver-1' });
    await leaver.close();
    const leaverRow = page.locator('#list .row[data-key="leaver-1"]');
    said = await why(leaverRow, 'gone', [/until the TTL removes it in \d+m \d+s/, leaver.connId], 'the departed row');
    assert.match(said, /ConnectionNone open/);
    assert.match(await page.locator('#why .writes').textContent(), new RegExp(`^Disconnect from connection ${leaver.connId}`));
    await closeWith('button');

    // 5. A row nothing is wrong with: beacons from an untracked (cli) connection, stable id, own host.
    const tool = await join({ id: 'cli-app', mode: 'cli', instanceId: 'cli-tool' }, ['operator.admin']);
    await tool.request({
      type: 'req', id: 'beacon', method: 'system-event',
      params: { text: 'clean beacon', instanceId: 'clean-1', host: 'clean-host', mode: 'probe' },
    });
    const clean = page.locator('#list .row[data-key="clean-1"]');
    await clean.waitFor({ state: 'visible', timeout: WAIT_MS });
    const version = Number(await text(page, '#presence-version'));
    await until(async () => Number(await doctorBadge.getAttribute('data-version')) >= version, `a doctor report of version ${version}`);
    assert.ok(await marker(clean).isHidden(), 'a row with no finding has no marker');
    assert.equal(await clean.getAttribute('data-findings'), null);
    assert.ok(await marker(gateway).isHidden(), 'the gateway row has no marker');
    assert.equal(await page.locator(`${ROWS} .why:not([hidden])`).count(), 6, 'two duplicates, bee-connect, bee-beacon, quiet-1, leaver-1');

    // The header counts every finding and shows the cap.
    assert.equal(await doctorBadge.getAttribute('data-state'), 'findings');
    assert.match(await doctorBadge.textContent(), /^doctor: \d+ findings · cap 7\/200$/);
    await doctorBadge.click();
    await panel.waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.match(await panel.textContent(), /7 of 200 rows in use · 0 evicted and 0 expired in the last 5m/);
    await closeWith('Escape');

    // Polled, but throttled: not more than one fetch a second on average.
    const span = (doctorFetches.at(-1) - doctorFetches[0]) / 1000;
    assert.ok(doctorFetches.length >= 3 && doctorFetches.length <= span / 2 + 2, `${doctorFetches.length} doctor fetches in ${span.toFixed(1)} s`);
    assert.deepEqual(page.errors, [], 'no uncaught page errors');
  });
});

test('doctor marks at 10,000 rows: matched by id or by ts, escaped, on the report\'s clock', { timeout: 60_000 }, async (t) => {
  // No server: the page, a crafted list and a crafted report. The server's
  // clock runs an hour ahead, and the stream's list was published 20 s
  // before the page opened it (the feed keeps the last list, stamped then),
  // so only the report tells the page what time it is on the server.
  const html = fs.readFileSync(DASHBOARD_HTML, 'utf8');
  const AHEAD = 3_600_000;
  const t0 = Date.now() + AHEAD;
  const conn = 'c0ffee00-0000-4000-8000-00000000000a';
  const hostile = '<img src=x onerror="window.__injected=1">';
  const presence = [
    { instanceId: 'GW', host: 'gw-host', mode: 'gateway', reason: 'self', ts: t0 - 20_000 },
    // Two rows keyed by connection ids: the list cannot tell them apart but by ts.
    { host: 'twin', mode: 'ui', reason: 'connect', ts: t0 - 30_000 },
    { host: 'twin', mode: 'ui', reason: 'disconnect', ts: t0 - 31_000 },
    { instanceId: 'Evil-1', host: 'evil', mode: 'ui', reason: 'connect', ts: t0 - 40_000 },
  ];
  for (let i = 0; i < 10_000; i++) {
    presence.push({ instanceId: `filler-${i}`, host: `filler-${i}`, mode: 'node', reason: 'connect', ts: t0 - 50_000 - i });
  }
  const list = `event: presence\ndata: ${JSON.stringify({ version: 7, serverTime: t0 - 20_000, presence })}\n\n`;

  function report() {
    const gen = Date.now() + AHEAD;
    const findings = [];
    const rows = {};
    const row = (key, ts, source, live, extra = {}) => {
      const write = { kind: 'connect', conn, source, at: ts };
      rows[key] = { keySource: source, keyExplained: `explained ${source}`, live, status: 'active', ageMs: gen - ts, created: write, writes: [write], findings: [], ...extra };
    };
    const find = (f) => { findings.push(f); for (const k of f.keys) rows[k].findings.push(findings.length - 1); };
    row(conn, t0 - 30_000, 'connection-id', true);
    row('evil-1', t0 - 40_000, 'instance-id', true, { keyExplained: hostile });
    find({ kind: 'duplicate', key: conn, keys: [conn], summary: `2 rows look like one ui client: \`${conn}\`.`, fix: 'Send a stable `client.instanceId`.' });
    find({ kind: 'stale-connected', key: 'evil-1', keys: ['evil-1'], summary: `${hostile} stopped sending beacons`, fix: '<b>bold</b> `<i>code</i>`' });
    for (let i = 0; i < 1000; i++) {
      row(`filler-${i}`, t0 - 50_000 - i, 'instance-id', true);
      find({ kind: 'stale-connected', key: `filler-${i}`, keys: [`filler-${i}`], summary: `filler-${i} is silent` });
    }
    row('filler-9999', t0 - 59_999, 'instance-id', true);
    find({ kind: 'cap-pressure', key: 'filler-9999', keys: ['filler-9999'], summary: 'The cap is nearly full.', fix: 'Raise --max-entries.' });
    const cap = { entries: 10_003, maxEntries: 10_500, evictedRecent: 0, expiredRecent: 0, ttlMs: 300_000, oldestKey: 'filler-9999', oldestAgeMs: gen - (t0 - 59_999) };
    return { generatedAt: gen, version: 7, entries: 10_004, counts: { 'cap-pressure': 1, duplicate: 1, gone: 0, 'stale-connected': 1001 }, findings, rows, cap };
  }

  let streams = 0;
  let reports = 0;
  const page = await newPage();
  t.after(() => page.context().close());
  await page.route('http://rollcall.test/**', (route) => {
    const url = new URL(route.request().url());
    if (url.pathname === '/') return route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: html });
    if (url.pathname === '/v1/presence/stream') {
      streams++;
      if (streams === 1) return route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: list });
      return route.fulfill({ status: 503, body: 'down' });
    }
    if (url.pathname === '/v1/presence/doctor') {
      reports++;
      return route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(report()) });
    }
    return route.fulfill({ status: 404, body: 'not found' });
  });
  await page.addInitScript(() => {
    window.__longTasks = [];
    new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__longTasks.push(e.duration); })
      .observe({ type: 'longtask', buffered: true });
  });

  await diagnose('doctor-crafted', page, null, async () => {
    await page.goto('http://rollcall.test/');
    await until(async () => (await text(page, '#doctor-label')) === 'doctor: 1003 findings', 'the header counts every finding');
    assert.equal(await text(page, '#doctor-cap'), '· cap 10003/10500');

    // The twin the report names (by its ts) is marked; the other, same host and no id, is not.
    const twinA = page.locator('#list .row[data-index="1"]');
    const twinB = page.locator('#list .row[data-index="2"]');
    await until(async () => (await twinA.locator('.why').textContent()) === 'why: duplicate', 'the twin the report names is marked');
    assert.ok(await twinB.locator('.why').isHidden(), 'the other twin is not');
    // Ages use the report's clock: the stream's stale serverTime alone would say about 10 s.
    await until(async () => /^3\ds ago · Connect$/.test(await twinA.locator('.age').textContent()), 'twin age on the server clock');
    await twinA.locator('.why').click();
    await until(async () => /Last writtenactive · 3\ds ago/.test(await page.locator('#why').textContent()), 'the panel ages on the server clock');
    assert.equal(await text(page, '#why-sub'), conn);

    // Server text is text, also in the panel; `code` spans are code elements.
    await page.locator('#list .row[data-key="evil-1"] .why').click();
    await until(async () => (await text(page, '#why-sub')) === 'evil-1', 'the panel follows the marker clicked');
    const said = await page.locator('#why').textContent();
    assert.ok(said.includes(`${hostile} stopped sending beacons`), said);
    assert.ok(said.includes(`Key from${hostile}`), said);
    assert.ok(said.includes('Fix: <b>bold</b> <i>code</i>'), said);
    assert.equal(await page.locator('#why code', { hasText: '<i>code</i>' }).count(), 1);
    assert.equal(await page.locator('#why img, #why b, #why i').count(), 0);
    assert.equal(await page.evaluate(() => window.__injected), undefined);
    await page.keyboard.press('Escape');
    await page.locator('#why').waitFor({ state: 'hidden', timeout: WAIT_MS });

    // Marks far down the virtual list: a stale one, none, and the cap's oldest row.
    assert.ok(await page.locator('#list .row').count() < 100, 'rows are virtualized');
    await page.evaluate(() => { const l = document.getElementById('list'); l.scrollTop = (1000 + 4 - 3) * 56; });
    await until(async () => (await page.locator('#list .row[data-key="filler-999"] .why').textContent()) === 'why: stale', 'filler-999 marked stale');
    assert.ok(await page.locator('#list .row[data-key="filler-1000"] .why').isHidden(), 'filler-1000 has no finding');
    await page.evaluate(() => { const l = document.getElementById('list'); l.scrollTop = l.scrollHeight; });
    await until(async () => (await page.locator('#list .row[data-key="filler-9999"] .why').textContent()) === 'why: cap', 'the oldest row marked cap');

    // The overview lists the first findings and counts the rest; "Show the row" scrolls there.
    await page.evaluate(() => { document.getElementById('list').scrollTop = 0; });
    await page.click('#doctor');
    await until(async () => /And 903 more/.test(await page.locator('#why').textContent()), 'the overview counts what it does not list');
    assert.equal(await page.locator('#why .finding').count(), 100);
    assert.match(await page.locator('#why').textContent(), /10003 of 10500 rows in use · 0 evicted and 0 expired in the last 5m · oldest: filler-9999/);

    // Polls keep going, and re-marking 10,000 rows per report stays cheap.
    const before = reports;
    await until(() => reports >= before + 1, 'the doctor polled again', 8_000);
    await sleep(200);
    const longest = await page.evaluate(() => Math.max(0, ...window.__longTasks));
    assert.ok(longest < 1_000, `a task took ${longest} ms`);
    assert.deepEqual(page.errors, [], 'no uncaught page errors');
  });
});

test('node rows show the host stats the node reported, also after it disconnected', { timeout: 60_000 }, async (t) => {
  const server = await startServer();
  t.after(() => server.kill());
  const page = await newPage();
  t.after(() => page.context().close());
  const hostFetches = [];
  page.on('request', (req) => { if (new URL(req.url()).pathname === '/v1/presence/hosts') hostFetches.push(Date.now()); });

  await diagnose('host-stats', page, server, async () => {
    await page.goto(`${server.base}/`);
    await page.locator('#list .row[data-index="0"]').waitFor({ state: 'visible', timeout: WAIT_MS });

    // A node connection, as OpenClaw's headless node host makes one.
    const node = await openClient(server.ws);
    await node.next((f) => f.type === 'event' && f.event === 'connect.challenge', 'connect.challenge');
    await node.request({
      type: 'req', id: 'c1', method: 'connect',
      params: {
        minProtocol: 3, maxProtocol: 4, role: 'node', scopes: [],
        client: { id: 'node-host', version: '2026.9.6', platform: 'linux', mode: 'node', instanceId: 'Node-Stats-1' },
      },
    });
    const row = page.locator('#list .row[data-key="node-stats-1"]');
    await row.waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.ok(await row.locator('.hoststats').isHidden(), 'no stats before the node reports any');

    // node.event node.host.stats with the payload OpenClaw's node host sends (NodeHostStatsPayload).
    const payload = {
      cpuCount: 8,
      loadAverage: [1.5, 0.75, 0.25],
      memoryTotalBytes: 16 * 2 ** 30,
      memoryFreeBytes: 4 * 2 ** 30,
      diskTotalBytes: 500 * 2 ** 30,
      diskAvailableBytes: 200 * 2 ** 30,
      hostname: '<img src=x onerror="window.__injected=1">',
    };
    const res = await node.request({
      type: 'req', id: 'h1', method: 'node.event',
      params: { event: 'node.host.stats', payloadJSON: JSON.stringify(payload) },
    });
    assert.equal(res.payload.handled, true, JSON.stringify(res.payload));

    const stats = row.locator('.hoststats');
    await stats.waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.equal(await text(page, '#list .row[data-key="node-stats-1"] .cpu'), '8 CPUs');
    assert.equal(await text(page, '#list .row[data-key="node-stats-1"] .mem'), 'mem 12.0 GiB / 16.0 GiB (75%)');
    assert.equal(await text(page, '#list .row[data-key="node-stats-1"] .load'), 'load 1.50 0.75 0.25');
    assert.match(await text(page, '#list .row[data-key="node-stats-1"] .asof'), /^as of \d+s ago$/);
    assert.ok(await page.locator('#list .row[data-index="0"] .hoststats').isHidden(), 'the gateway row shows none');
    assert.match(await stats.getAttribute('title'), /^8 CPUs · mem 12\.0 GiB \/ 16\.0 GiB \(75%\) · load 1\.50 0\.75 0\.25 · as of \d+s ago\nReported by the node, received /);

    // The node goes away: its row stays listed (until the TTL), and so do its stats, aging.
    await node.close();
    await until(async () => / · Node disconnect$/.test(await row.locator('.age').textContent()), 'the node row to show Node disconnect');
    await sleep(HOSTS_SETTLE_MS);
    assert.ok(await stats.isVisible(), 'stats shown after the disconnect');
    assert.equal(await text(page, '#list .row[data-key="node-stats-1"] .cpu'), '8 CPUs');
    await until(async () => /^as of [1-9]\d*s ago$/.test(await row.locator('.asof').textContent()), 'the stats to age');
    await page.screenshot({ path: path.join(ARTIFACTS, 'host-stats.png') });

    // Fetched with the list and on a timer, but never more than once per few seconds.
    const span = (hostFetches.at(-1) - hostFetches[0]) / 1000;
    assert.ok(hostFetches.length >= 2 && hostFetches.length <= span / 2.5 + 2, `${hostFetches.length} host fetches in ${span.toFixed(1)} s`);
    assert.equal(await page.evaluate(() => window.__injected), undefined);
    assert.deepEqual(page.errors, [], 'no uncaught page errors');
  });
});

/** Longer than the dashboard's host stats poll, so a refetch after the disconnect has happened. */
const HOSTS_SETTLE_MS = 6_000;
