// Connections over real sockets: idle ones from one address cannot use up the descriptors, and one reset before its
// request is handled is no user.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import type { Config } from '../src/config.js';
import { testApp, type TestApp, type TestAppOptions } from './support/app.js';

const SECOND_LOOPBACK = '127.0.0.2';

describe('connection limits', () => {
  let t: TestApp | null = null;
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await t?.close();
    t = null;
  });

  /** A real app listening on an ephemeral port of 127.0.0.1; resolves with the port. */
  async function listening(overrides: Partial<Config>, options: TestAppOptions = {}): Promise<number> {
    t = await testApp({ ingestRateLimit: null, readRateLimit: null, addressRateLimit: null, ...overrides }, options);
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const address = t.app.server.address();
    assert.ok(address !== null && typeof address === 'object');
    return address.port;
  }

  /** A connection that sends nothing, from `localAddress` (any loopback address reaches 127.0.0.1 on Linux). */
  async function idle(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
    const socket = connect({ port, host: '127.0.0.1', localAddress });
    sockets.push(socket);
    socket.on('error', () => {});
    await once(socket, 'connect');
    return socket;
  }

  /** Waits until the server has accepted `count` connections (accepting happens on the server's own turn). */
  async function accepted(count: number): Promise<void> {
    for (let tries = 0; tries < 200; tries++) {
      const open = await new Promise<number>((resolve, reject) =>
        t?.app.server.getConnections((error, n) => (error ? reject(error) : resolve(n))),
      );
      if (open >= count) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.fail(`the server did not accept ${count} connections`);
  }

  const closedWithin = (socket: Socket, ms: number): Promise<boolean> =>
    new Promise((resolve) => {
      if (socket.destroyed) return resolve(true);
      const timer = setTimeout(() => resolve(false), ms);
      socket.resume();
      socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });

  /** Sends a request on the socket and resolves with the status line of the answer. */
  async function statusLine(socket: Socket): Promise<string> {
    socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    return chunk.toString('latin1').split('\r\n')[0] ?? '';
  }

  it('idle connections from one address beyond --max-connections-per-address are closed at once', async () => {
    const port = await listening({ maxConnectionsPerAddress: 5 });
    const first = await Promise.all(Array.from({ length: 5 }, () => idle(port)));
    await accepted(5);
    const excess = await idle(port);
    assert.ok(await closedWithin(excess, 2000), 'the sixth connection from the address is closed');
    for (const socket of first) assert.ok(!socket.destroyed, 'the first five stay open');

    const other = await idle(port, SECOND_LOOPBACK);
    assert.equal(await statusLine(other), 'HTTP/1.1 200 OK', 'another address still connects and is answered');

    first[0]?.destroy();
    await closedWithin(first[0] as Socket, 2000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const again = await idle(port);
    assert.equal(await statusLine(again), 'HTTP/1.1 200 OK', 'a closed connection frees its place');

    const metrics = await t?.app.inject({ url: '/metrics' });
    assert.match(metrics?.body ?? '', /online_stats_http_connections_refused_total\{reason="address_limit"\} 1/);
  });

  it('connections beyond --max-connections are closed at once, whatever their address', async () => {
    const port = await listening({ maxConnections: 4 });
    const open = [
      await idle(port),
      await idle(port),
      await idle(port, SECOND_LOOPBACK),
      await idle(port, SECOND_LOOPBACK),
    ];
    await accepted(4);
    assert.ok(await closedWithin(await idle(port, '127.0.0.3'), 2000), 'a fifth connection is closed');
    for (const socket of open) assert.ok(!socket.destroyed);
    const metrics = await t?.app.inject({ url: '/metrics' });
    assert.match(metrics?.body ?? '', /online_stats_http_connections_refused_total\{reason="total_limit"\} 1/);
    assert.match(metrics?.body ?? '', /online_stats_http_connections_open 4/);
  });

  it('a connection that never sends a request is closed after --request-timeout, not after minutes', async () => {
    const port = await listening({ requestTimeoutMs: 300 });
    const silent = await idle(port);
    const halfSent = await idle(port);
    halfSent.write('POST /heartbeat HTTP/1.1\r\nHost: localhost\r\n');
    assert.ok(await closedWithin(silent, 2000), 'a connection that sent nothing is closed');
    assert.ok(await closedWithin(halfSent, 2000), 'a connection that sent half a request is closed');
  });

  it('a client that resets its connection before the pre-handler is counted as itself, not as a phantom, and logs no error', async () => {
    const logs: { level: number; msg?: string; err?: unknown }[] = [];
    let answered = 0;
    let arrived = 0;
    const port = await listening(
      { trustProxy: ['127.0.0.1/32'] },
      {
        logger: { level: 'info', stream: { write: (line: string) => void logs.push(JSON.parse(line)) } },
        prepare(app) {
          // Holds marked requests until their socket is gone, so the reset lands before the pre-handler on every run.
          app.addHook('onRequest', async (request) => {
            if (request.headers['x-hold-until-reset'] === undefined) return;
            arrived++;
            const socket = request.raw.socket;
            // Not events.once: it would reject with the reset's ECONNRESET, which the request itself never sees.
            if (!socket.destroyed) await new Promise((resolve) => socket.once('close', resolve));
          });
          app.addHook('onSend', async (request) => {
            if (request.headers['x-hold-until-reset'] !== undefined) answered++;
          });
        },
      },
    );
    const online = async (): Promise<number> =>
      ((await t?.app.inject({ url: '/online_clients' }))?.json() as { online_clients_count: number })
        .online_clients_count;
    const before = await online();

    const clients = 20;
    for (let n = 0; n < clients; n++) {
      const socket = await idle(port);
      const forwarded = n % 2 === 0 ? `x-forwarded-for: 198.51.100.${n + 1}\r\n` : '';
      socket.write(`POST /heartbeat HTTP/1.1\r\nHost: localhost\r\nx-hold-until-reset: 1\r\n${forwarded}\r\n`);
      for (let tries = 0; arrived <= n && tries < 200; tries++) await new Promise((resolve) => setTimeout(resolve, 5));
      socket.resetAndDestroy();
    }
    for (let tries = 0; answered < clients && tries < 400; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.equal(arrived, clients, 'every request reached the server');
    assert.equal(answered, clients, 'every request was answered, to nobody');
    // The address is read when the connection is accepted, so it outlives the socket: 10 forwarded addresses and the
    // proxy's own, never a pseudonym of "undefined" shared by all 20.
    assert.equal(await online(), before + clients / 2 + 1, 'each counted under its own address');
    const errors = logs.filter((line) => line.level >= 50);
    assert.deepEqual(errors, [], 'no 500 and no stack in the log');
  });

  it('a request whose address is gone before the pre-handler is refused, not counted as a phantom', async () => {
    const logs: { level: number }[] = [];
    await listening(
      { trustProxy: ['127.0.0.1/32'] },
      {
        logger: { level: 'info', stream: { write: (line: string) => void logs.push(JSON.parse(line)) } },
        prepare(app) {
          // A socket reset during the handshake, before Node could read its peer: it has no address left to give.
          app.addHook('onRequest', async (request) => {
            if (request.headers['x-address-gone'] !== undefined)
              Object.defineProperty(request.raw.socket, 'remoteAddress', { value: undefined });
          });
        },
      },
    );
    const online = async (): Promise<number> =>
      ((await t?.app.inject({ url: '/online_clients' }))?.json() as { online_clients_count: number })
        .online_clients_count;
    const before = await online();
    for (const forwarded of [undefined, '198.51.100.1', '198.51.100.2']) {
      const res = await t?.app.inject({
        method: 'POST',
        url: '/heartbeat',
        headers: { 'x-address-gone': '1', ...(forwarded ? { 'x-forwarded-for': forwarded } : {}) },
      });
      assert.equal(res?.statusCode, 400, forwarded);
      assert.equal(res?.json<{ code: string }>().code, 'OS_CONNECTION_CLOSED', forwarded);
    }
    assert.equal(await online(), before, 'none of them was counted');
    assert.deepEqual(
      logs.filter((line) => line.level >= 50),
      [],
      'no 500 and no stack in the log',
    );
  });

  it('connections from a trusted proxy are not capped per address: every client behind it shares its address', async () => {
    const port = await listening({ maxConnectionsPerAddress: 2, trustProxy: ['127.0.0.1/32'] });
    const viaProxy = await Promise.all(Array.from({ length: 4 }, () => idle(port)));
    await accepted(4);
    assert.equal(await statusLine(viaProxy[3] as Socket), 'HTTP/1.1 200 OK');
    for (const socket of viaProxy) assert.ok(!socket.destroyed);
    await Promise.all([idle(port, SECOND_LOOPBACK), idle(port, SECOND_LOOPBACK)]);
    await accepted(6);
    assert.ok(await closedWithin(await idle(port, SECOND_LOOPBACK), 2000), 'other addresses keep their cap');
  });
});
