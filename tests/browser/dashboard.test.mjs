// Real-browser test of the Instances dashboard served at GET /.
//
// Starts the real `rollcall serve` binary on a free loopback port, drives
// Debian's chromium through playwright-core, and sends presence over the real
// WebSocket handshake (PROTOCOL.md §3, §5.2). Run with `node --test` (see run.sh).
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
  page.on('request', (req) => {
    if (new URL(req.url()).pathname !== '/v1/presence/stream') return;
    streamRequests.push(req.allHeaders().then((h) => ({ url: req.url(), auth: h.authorization })));
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

    // Ticks keep running without freezing the tab.
    await sleep(2_500);
    const longest = await page.evaluate(() => Math.max(0, ...window.__longTasks));
    assert.ok(longest < 1_000, `a task took ${longest} ms`);
    assert.deepEqual(page.errors, [], 'no uncaught page errors');
  });
});
