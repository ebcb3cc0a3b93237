// permessage-deflate with a real client (docs/protocol.md §1): Node's `ws`,
// which OpenClaw clients use, with its default perMessageDeflate, against
// the real `rollcall serve` binary. It must negotiate the extension and
// receive the same lists, byte for byte after inflation, as a `ws` client
// with the extension off; its own compressed requests must be answered.
//
// Run: ROLLCALL_BIN=target/debug/rollcall bash tests/ws-deflate/run.sh

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.ROLLCALL_BIN
  ? path.resolve(process.env.ROLLCALL_BIN)
  : path.resolve(HERE, '../../target/debug/rollcall');
/** Generous for a loaded 2-core machine; every wait returns as soon as it holds. */
const WAIT_MS = 15_000;
const ROWS = 200;

const servers = [];
after(async () => {
  for (const s of servers) await s.kill();
});

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

async function startServer() {
  assert.ok(fs.existsSync(BIN), `rollcall binary not found at ${BIN}: cargo build, or set ROLLCALL_BIN`);
  const port = await freePort();
  // One connection writes all the rows: past the default --max-beacon-rows.
  const args = ['serve', '--bind', `127.0.0.1:${port}`, '--max-entries', '1000', '--max-beacon-rows', '1000'];
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (d) => { log = (log + d).slice(-32_000); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exit = null;
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => { exit = { code, signal }; resolve(); }));
  const server = {
    url: `ws://127.0.0.1:${port}/`,
    async kill() { if (!exit) child.kill('SIGKILL'); await exited; },
  };
  servers.push(server);
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exit) throw new Error(`rollcall exited early (${JSON.stringify(exit)}):\n${log}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return server;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`no /healthz within 20 s:\n${log}`);
    await sleep(100);
  }
}

/** A `ws` client keeping every text message, raw, in arrival order. */
async function open(url, options) {
  const ws = new WebSocket(url, options);
  const messages = [];
  const waiters = new Set();
  ws.on('message', (data, isBinary) => {
    assert.equal(isBinary, false);
    messages.push(String(data));
    for (const w of waiters) w();
  });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const client = {
    ws,
    /** The first unread message whose parsed frame satisfies `pred`; raw and parsed. */
    next(pred, what) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const i = messages.findIndex((m) => pred(JSON.parse(m)));
          if (i < 0) return;
          cleanup();
          const raw = messages.splice(i, 1)[0];
          resolve({ raw, frame: JSON.parse(raw) });
        };
        const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out waiting for ${what}`)); }, WAIT_MS);
        const cleanup = () => { clearTimeout(timer); waiters.delete(check); };
        waiters.add(check);
        check();
      });
    },
    request(id, method, params) {
      ws.send(JSON.stringify({ type: 'req', id, method, params }));
      return client.next((f) => f.type === 'res' && f.id === id, `the reply to ${id}`);
    },
    async connect(mode, scopes) {
      await client.next((f) => f.event === 'connect.challenge', 'the challenge');
      const hello = await client.request('c1', 'connect', {
        minProtocol: 3, maxProtocol: 4,
        client: { id: 'ws-deflate-test', version: '1.0.0', platform: 'linux', mode },
        scopes,
      });
      assert.equal(hello.frame.ok, true, hello.raw);
      return hello;
    },
  };
  return client;
}

/** The raw text with the self entry's fresh `ts` (the list's first) and `seq` set to 0. */
function normalized(raw, listStart) {
  const at = raw.indexOf(listStart);
  assert.ok(at >= 0, `${listStart} not in ${raw.slice(0, 200)}`);
  const head = raw.slice(0, at);
  const rest = raw.slice(at).replace(/"ts":\d+/, '"ts":0');
  return (head + rest).replace(/,"seq":\d+/, ',"seq":0');
}

test('a ws client with its default perMessageDeflate gets the same lists as one without', async () => {
  const server = await startServer();
  const admin = await open(server.url, { perMessageDeflate: false });
  await admin.connect('cli', ['operator.read', 'operator.admin']);
  for (let i = 0; i < ROWS; i++) {
    const n = String(i).padStart(12, '0');
    const beacon = await admin.request(`b${i}`, 'system-event', {
      text: `Node: mac-${i} (10.0.${i >> 8}.${i & 255}) · app 2026.11.2 · mode ui · reason periodic`,
      host: `mac-${i}`,
      ip: `10.0.${i >> 8}.${i & 255}`,
      instanceId: `5d0f3c2e-7a41-4b8e-9c1d-${n}`,
      deviceFamily: 'Mac',
      modelIdentifier: 'Mac15,6',
      version: '2026.11.2',
      platform: 'macos 15.1',
      mode: 'ui',
    });
    assert.equal(beacon.frame.ok, true, beacon.raw);
  }

  const zipped = await open(server.url); // ws's default: perMessageDeflate on
  const plain = await open(server.url, { perMessageDeflate: false });
  assert.match(zipped.ws.extensions, /permessage-deflate/);
  assert.equal(plain.ws.extensions, '');
  const helloZ = await zipped.connect('cli', ['operator.read']);
  const helloP = await plain.connect('cli', ['operator.read']);
  const rowsOf = (hello) => hello.frame.payload.snapshot.presence;
  assert.equal(rowsOf(helloZ).length, ROWS + 1);
  assert.deepEqual(rowsOf(helloZ).slice(1), rowsOf(helloP).slice(1));

  // system-presence: the same request id, so byte for byte but the self ts.
  const listZ = await zipped.request('p1', 'system-presence', {});
  const listP = await plain.request('p1', 'system-presence', {});
  assert.equal(normalized(listZ.raw, '"payload":['), normalized(listP.raw, '"payload":['));

  // A change: the same presence event, byte for byte but seq.
  const wireBefore = [zipped.ws._socket.bytesRead, plain.ws._socket.bytesRead];
  const late = await admin.request('late', 'system-event', { text: 'late', host: 'late', instanceId: 'late-1' });
  assert.equal(late.frame.ok, true, late.raw);
  const hasLate = (f) => f.event === 'presence' && f.payload.presence.some((r) => r.host === 'late');
  const eventZ = await zipped.next(hasLate, 'the presence event with the late row (deflate)');
  const eventP = await plain.next(hasLate, 'the presence event with the late row (plain)');
  assert.equal(eventZ.raw.replace(/,"seq":\d+/, ''), eventP.raw.replace(/,"seq":\d+/, ''));
  await sleep(200);
  const wire = [zipped.ws._socket.bytesRead - wireBefore[0], plain.ws._socket.bytesRead - wireBefore[1]];
  assert.ok(wire[0] * 3 < wire[1], `compressed on the wire: ${wire[0]} vs ${wire[1]} bytes`);

  // ws compresses messages over 1 KiB: the server inflates them.
  const pad = 'x'.repeat(4000);
  const big = await zipped.request('big', 'health', { pad });
  assert.equal(big.frame.id, 'big', big.raw);

  for (const c of [admin, zipped, plain]) c.ws.close();
});
