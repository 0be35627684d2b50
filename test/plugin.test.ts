// The service registered as a plugin into a host app that has its own routes, parsers and error handling: its routes
// work under the prefix, and nothing of it leaks into the host's.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Browser } from 'playwright-core';
import { ManualClock } from '../src/clock.js';
import { defaultConfig } from '../src/config.js';
import { onlineStats, openStore, createCalendar, type Store } from '../src/index.js';
import { DATABASE_FILE } from '../src/store/sqlite.js';
import { SECRET, T0, lockIsFree, tempDir } from './support/app.js';
import { browserSkip, launchBrowser } from './support/browser.js';

/** A host with a route of its own, Fastify's default parsers, and its own error and not-found answers. */
function hostApp(): FastifyInstance {
  const host = Fastify({ logger: false });
  host.setErrorHandler((error: Error, _request, reply) =>
    reply.code(418).send({ host: 'error', message: error.message }),
  );
  host.setNotFoundHandler((_request, reply) => reply.code(404).send({ host: 'not found' }));
  host.post('/echo', async (request) => ({ got: request.body }));
  host.get('/fail', async () => {
    throw new Error('the host failed');
  });
  return host;
}

describe('the Fastify plugin in a host app', () => {
  const dir = tempDir();
  let host: FastifyInstance;
  let store: Store;
  const clock = new ManualClock(T0);
  before(async () => {
    const config = defaultConfig({ dataDir: dir.path });
    store = (await openStore(config, createCalendar('UTC'), clock, SECRET)).store;
    host = hostApp();
    await host.register(onlineStats, {
      prefix: '/stats',
      store,
      identitySecret: SECRET,
      clock,
      config: { ingestRateLimit: null },
    });
    await host.ready();
  });
  after(async () => {
    await host.close();
    await store.close();
    dir.remove();
  });

  it('serves the API under the prefix and counts heartbeats in the given store', async () => {
    for (const id of ['a', 'b', 'c']) {
      const beat = await host.inject({ method: 'POST', url: '/stats/heartbeat', payload: { client_id: id } });
      assert.equal(beat.statusCode, 200, beat.body);
    }
    const online = await host.inject('/stats/online_clients');
    assert.equal(online.statusCode, 200);
    assert.equal(online.json().online_clients_count, 3);
    assert.equal(await store.countOnline(clock.nowMs()), 3);
    // Nothing of the service at the host's root.
    assert.deepEqual((await host.inject('/online_clients')).json(), { host: 'not found' });
  });

  it("leaves the host's body parsing, error handler and not-found answer as they were", async () => {
    // The service parses text/plain as JSON (for sendBeacon); the host keeps Fastify's plain string.
    const echo = await host.inject({
      method: 'POST',
      url: '/echo',
      headers: { 'content-type': 'text/plain' },
      payload: 'hello',
    });
    assert.equal(echo.statusCode, 200, echo.body);
    assert.deepEqual(echo.json(), { got: 'hello' });
    // The service refuses prototype keys; the host's JSON parser is its own (Fastify's default refuses them too, so
    // the host's own error handler answering shows whose parser ran).
    const proto = await host.inject({
      method: 'POST',
      url: '/echo',
      headers: { 'content-type': 'application/json' },
      payload: '{"__proto__": {"x": 1}}',
    });
    assert.equal(proto.statusCode, 418, proto.body);
    assert.equal((await host.inject('/fail')).json().host, 'error');
    assert.deepEqual((await host.inject('/nowhere')).json(), { host: 'not found' });
  });

  it("answers its own errors and its own unknown URLs in the service's shape", async () => {
    const bad = await host.inject('/stats/total_users?days=abc');
    assert.equal(bad.statusCode, 400);
    assert.deepEqual(Object.keys(bad.json()).sort(), ['code', 'detail', 'error', 'message', 'statusCode']);
    assert.match(bad.json().message, /days/);
    const unknown = await host.inject('/stats/nowhere');
    assert.equal(unknown.statusCode, 404);
    assert.match(unknown.json().code, /^OS_/);
  });

  it('counts its routes in its metrics by their URL under the prefix', async () => {
    await host.inject({
      method: 'POST',
      url: '/stats/heartbeat',
      payload: '{',
      headers: { 'content-type': 'application/json' },
    });
    const metrics = (await host.inject('/stats/metrics')).body;
    assert.match(metrics, /online_stats_http_requests_total\{[^}]*route="\/stats\/heartbeat"[^}]*\} [1-9]/);
    assert.match(metrics, /online_stats_heartbeats_rejected_total\{reason="invalid"\} 1/);
    assert.doesNotMatch(metrics, /route="\/echo"/);
  });

  it('links the dashboard, its assets and the API docs under the prefix', async () => {
    const page = await host.inject('/stats/');
    assert.equal(page.statusCode, 200);
    const links = [...page.body.matchAll(/(?:href|src)="([^"]+)"/g)].map((m) => m[1] as string);
    assert.ok(links.length >= 4, page.body);
    for (const link of links) {
      assert.ok(link.startsWith('/stats/'), `${link} is outside the prefix`);
      assert.equal((await host.inject(link)).statusCode, 200, link);
    }
  });
});

describe('the plugin without a store of its own', () => {
  it('opens the embedded store in config.dataDir, holds its lock, and closes both with the host', async () => {
    const dir = tempDir();
    try {
      const host = hostApp();
      await host.register(onlineStats, { prefix: '/stats', config: { dataDir: dir.path } });
      await host.ready();
      assert.ok(existsSync(join(dir.path, DATABASE_FILE)));
      assert.equal(lockIsFree(dir.path), false);
      assert.equal((await host.inject({ method: 'POST', url: '/stats/heartbeat', payload: {} })).statusCode, 200);
      assert.equal((await host.inject('/stats/readyz')).statusCode, 200);
      await host.close();
      assert.equal(lockIsFree(dir.path), true);
    } finally {
      dir.remove();
    }
  });
});

describe('the dashboard under a prefix in Chromium', { skip: browserSkip }, () => {
  let browser: Browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(() => browser?.close());

  it('reads the API under the prefix and shows the live count', async () => {
    const dir = tempDir();
    const host = hostApp();
    await host.register(onlineStats, { prefix: '/stats', config: { dataDir: dir.path } });
    await host.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(host.server.address() as AddressInfo).port}`;
    const page = await browser.newPage();
    const outside: string[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(`${url}/stats/`)) outside.push(request.url());
    });
    try {
      for (const id of ['x', 'y']) {
        const beat = await fetch(`${url}/stats/heartbeat`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ client_id: id }),
        });
        assert.equal(beat.status, 200);
      }
      await page.goto(`${url}/stats/`);
      await page.waitForFunction(() => document.getElementById('online')?.dataset.value === '2', null, {
        timeout: 10_000,
      });
      assert.deepEqual(outside, []);
    } finally {
      await page.close();
      await host.close();
      dir.remove();
    }
  });
});
