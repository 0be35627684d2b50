// The demo's API contract and the service's answers to good and bad input, through app.inject().
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import type { InjectOptions } from 'fastify';
import { testApp, type TestApp } from './support/app.js';

const MINUTE = 60_000;
const DAY = 86_400_000;
const json = { 'content-type': 'application/json' };
const GATEWAY = 'gateway-token-0123456789';
const gateway = { ...json, authorization: `Bearer ${GATEWAY}` };

describe('the demo API, unchanged for existing clients', () => {
  let t: TestApp;
  before(async () => (t = await testApp({ ingestRateLimit: null, readRateLimit: null })));
  after(() => t.close());

  it('POST /heartbeat with no body answers the demo JSON with the caller address', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/heartbeat', remoteAddress: '198.51.100.7' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { message: 'Heartbeat received', ip: '198.51.100.7' });
  });

  it('GET and POST /online_clients count distinct callers online now', async () => {
    await t.app.inject({ method: 'POST', url: '/heartbeat', remoteAddress: '198.51.100.8' });
    await t.app.inject({ method: 'POST', url: '/heartbeat', remoteAddress: '198.51.100.8' });
    for (const method of ['GET', 'POST'] as const) {
      const res = await t.app.inject({ method, url: '/online_clients' });
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.json(), { online_clients_count: 2 });
    }
  });

  it('GET and POST /total_users answer recent_users_count and days (7 by default)', async () => {
    for (const method of ['GET', 'POST'] as const) {
      assert.deepEqual((await t.app.inject({ method, url: '/total_users' })).json(), {
        recent_users_count: 2,
        days: 7,
      });
      assert.deepEqual((await t.app.inject({ method, url: '/total_users?days=30' })).json(), {
        recent_users_count: 2,
        days: 30,
      });
    }
  });

  it('online ends exactly at the timeout, while the user stays in total_users', async () => {
    const start = t.clock.nowMs();
    await t.app.inject({ method: 'POST', url: '/heartbeat', remoteAddress: '198.51.100.9' });
    t.clock.advance(10 * MINUTE);
    assert.equal(
      (await t.app.inject({ url: '/online_clients' })).json().online_clients_count,
      3,
      'online at exactly 10 min',
    );
    t.clock.advance(1);
    assert.equal((await t.app.inject({ url: '/online_clients' })).json().online_clients_count, 0);
    assert.equal((await t.app.inject({ url: '/total_users?days=1' })).json().recent_users_count, 3);
    t.clock.set(start + DAY + 1);
    assert.equal(
      (await t.app.inject({ url: '/total_users?days=1' })).json().recent_users_count,
      0,
      'a day and a ms later, out of days=1',
    );
    assert.equal((await t.app.inject({ url: '/total_users?days=2' })).json().recent_users_count, 3);
  });
});

describe('identity, leave and channels', () => {
  let t: TestApp;
  before(async () => (t = await testApp({ ingestRateLimit: null, readRateLimit: null, ingestToken: GATEWAY })));
  after(() => t.close());

  it('clients behind one address count separately by client_id (body) or X-Client-Id (header)', async () => {
    const from = { remoteAddress: '203.0.113.1' };
    await t.app.inject({ method: 'POST', url: '/heartbeat', ...from, headers: json, payload: { client_id: 'alice' } });
    await t.app.inject({ method: 'POST', url: '/heartbeat', ...from, headers: { 'x-client-id': 'bob' } });
    await t.app.inject({ method: 'POST', url: '/heartbeat', ...from, headers: { 'x-client-id': 'alice' } });
    assert.equal((await t.app.inject({ url: '/online_clients' })).json().online_clients_count, 2);
  });

  it('POST /leave takes the caller offline at once; it still counts as active', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/leave', headers: { 'x-client-id': 'bob' } });
    assert.equal(res.statusCode, 200);
    assert.equal((await t.app.inject({ url: '/online_clients' })).json().online_clients_count, 1);
    assert.equal((await t.app.inject({ url: '/total_users?days=1' })).json().recent_users_count, 2);
  });

  it('a channel has its own online count, and /top_channels ranks them', async () => {
    await t.app.inject({
      method: 'POST',
      url: '/heartbeat',
      headers: json,
      payload: { client_id: 'c1', channel: 'lobby' },
    });
    await t.app.inject({
      method: 'POST',
      url: '/heartbeat',
      headers: json,
      payload: { client_id: 'c2', channel: 'lobby' },
    });
    await t.app.inject({
      method: 'POST',
      url: '/heartbeat',
      headers: json,
      payload: { client_id: 'c3', channel: 'game' },
    });
    assert.deepEqual((await t.app.inject({ url: '/online_clients?channel=lobby' })).json(), {
      online_clients_count: 2,
    });
    assert.deepEqual((await t.app.inject({ url: '/top_channels?limit=5' })).json(), {
      channels: [
        { channel: 'lobby', online: 2 },
        { channel: 'game', online: 1 },
      ],
    });
  });

  it('a text/plain body holding JSON (navigator.sendBeacon) is read like JSON', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/heartbeat',
      headers: { 'content-type': 'text/plain;charset=UTF-8' },
      payload: JSON.stringify({ client_id: 'beacon' }),
    });
    assert.equal(res.statusCode, 200);
    assert.equal((await t.app.inject({ url: '/online_clients' })).json().online_clients_count, 5);
    const bad = await t.app.inject({
      method: 'POST',
      url: '/heartbeat',
      headers: { 'content-type': 'text/plain' },
      payload: '{"client_id": 7, "x": 1}',
    });
    assert.equal(bad.statusCode, 400, 'the same schema applies');
  });

  it('POST /heartbeats marks a batch of client ids online in one request', async () => {
    const ids = Array.from({ length: 1000 }, (_, n) => `player-${n}`);
    const res = await t.app.inject({
      method: 'POST',
      url: '/heartbeats',
      headers: gateway,
      payload: { client_ids: ids, channel: 'arena' },
    });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { accepted: 1000 });
    assert.equal((await t.app.inject({ url: '/online_clients?channel=arena' })).json().online_clients_count, 1000);
  });
});

describe('bad input gets a 4xx that names the problem, never a 5xx', () => {
  let t: TestApp;
  before(
    async () =>
      (t = await testApp({ ingestRateLimit: null, readRateLimit: null, maxBatchIds: 10, ingestToken: GATEWAY })),
  );
  after(() => t.close());

  const expect4xx = async (status: number, request: InjectOptions, mentions: RegExp) => {
    const res = await t.app.inject(request);
    assert.equal(res.statusCode, status, res.body);
    const body = res.json();
    assert.equal(body.statusCode, status);
    assert.match(body.message, mentions);
    assert.equal(typeof body.code, 'string');
  };

  it('days outside 1..max, or not an integer, is a 400 naming days', async () => {
    for (const days of ['0', '-1', '99999999', '3651', 'abc', '1.5', '', '7&days=8']) {
      await expect4xx(400, { url: `/total_users?days=${days}` }, /days/);
      await expect4xx(400, { method: 'POST', url: `/total_users?days=${days}` }, /days/);
    }
    assert.equal((await t.app.inject({ url: '/total_users?days=3650' })).statusCode, 200);
  });

  it('invalid JSON is a 400', async () => {
    await expect4xx(400, { method: 'POST', url: '/heartbeat', headers: json, payload: '{"client_id":' }, /JSON/);
  });

  it('unknown fields are refused, not dropped', async () => {
    await expect4xx(
      400,
      { method: 'POST', url: '/heartbeat', headers: json, payload: { client_id: 'a', clientid: 'b' } },
      /additional properties/,
    );
  });

  it('a bad client_id or channel is a 400 naming it', async () => {
    await expect4xx(
      400,
      { method: 'POST', url: '/heartbeat', headers: json, payload: { client_id: 'x'.repeat(129) } },
      /client_id/,
    );
    await expect4xx(400, { method: 'POST', url: '/heartbeat', headers: json, payload: { client_id: '' } }, /client_id/);
    await expect4xx(
      400,
      { method: 'POST', url: '/heartbeat', headers: json, payload: { client_id: 'tab\there' } },
      /client_id/,
    );
    await expect4xx(
      400,
      { method: 'POST', url: '/heartbeat', headers: json, payload: { client_id: ['a'] } },
      /client_id/,
    );
    await expect4xx(
      400,
      { method: 'POST', url: '/heartbeat', headers: { 'x-client-id': 'y'.repeat(200) } },
      /x-client-id/,
    );
    await expect4xx(
      400,
      { method: 'POST', url: '/heartbeat', headers: json, payload: { channel: 'c'.repeat(65) } },
      /channel/,
    );
    await expect4xx(400, { url: `/online_clients?channel=${'c'.repeat(65)}` }, /channel/);
  });

  it('a body that is not an object is a 400', async () => {
    await expect4xx(400, { method: 'POST', url: '/heartbeat', headers: json, payload: '[1,2]' }, /body/);
    await expect4xx(400, { method: 'POST', url: '/heartbeat', headers: json, payload: '"hi"' }, /body/);
  });

  it('another content type is a 415', async () => {
    await expect4xx(
      415,
      { method: 'POST', url: '/heartbeat', headers: { 'content-type': 'application/xml' }, payload: '<a/>' },
      /content-type|Content-Type|media type/i,
    );
  });

  it('a body over the limit is a 413', async () => {
    await expect4xx(
      413,
      {
        method: 'POST',
        url: '/heartbeat',
        headers: json,
        payload: JSON.stringify({ client_id: 'a', pad: 'x'.repeat(10_000) }),
      },
      /too large|body/i,
    );
  });

  it('a batch over the configured maximum is a 400', async () => {
    const ids = Array.from({ length: 11 }, (_, n) => `id-${n}`);
    await expect4xx(
      400,
      { method: 'POST', url: '/heartbeats', headers: gateway, payload: { client_ids: ids } },
      /client_ids/,
    );
    await expect4xx(400, { method: 'POST', url: '/heartbeats', headers: gateway, payload: {} }, /client_ids/);
  });

  it('constructor and __proto__ keys were dropped silently (200): now the body is refused, JSON or text/plain', async () => {
    for (const payload of ['{"constructor":{"x":1}}', '{"__proto__":{"x":1}}', '{"client_id":"a","constructor":{}}']) {
      for (const type of ['application/json', 'text/plain']) {
        await expect4xx(
          400,
          { method: 'POST', url: '/heartbeat', headers: { 'content-type': type }, payload },
          /prototype|additional properties/i,
        );
      }
    }
  });

  it('an empty JSON body is a valid heartbeat', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/heartbeat', headers: json, payload: '' });
    assert.equal(res.statusCode, 200);
  });

  it('an unknown path is a JSON 404', async () => {
    await expect4xx(404, { url: '/nope' }, /nope/);
  });

  it('none of this lost what was stored', async () => {
    assert.equal((await t.app.inject({ url: '/online_clients' })).json().online_clients_count, 1);
  });
});

describe('API token', () => {
  let t: TestApp;
  const token = 's3cret-token';
  before(async () => (t = await testApp({ apiToken: token, ingestRateLimit: null, readRateLimit: null })));
  after(() => t.close());

  it('reads, analytics, metrics and batch ingest need the bearer token; heartbeats do not', async () => {
    for (const url of [
      '/online_clients',
      '/total_users?days=7',
      '/top_channels',
      '/analytics/summary',
      '/analytics/daily',
      '/metrics',
    ]) {
      assert.equal((await t.app.inject({ url })).statusCode, 401, url);
      assert.equal((await t.app.inject({ url, headers: { authorization: 'Bearer wrong' } })).statusCode, 401, url);
      assert.equal((await t.app.inject({ url, headers: { authorization: `Bearer ${token}` } })).statusCode, 200, url);
    }
    const batch = { method: 'POST' as const, url: '/heartbeats', headers: json, payload: { client_ids: ['a'] } };
    assert.equal((await t.app.inject(batch)).statusCode, 401);
    assert.equal(
      (await t.app.inject({ ...batch, headers: { ...json, authorization: `Bearer ${token}` } })).statusCode,
      200,
    );
    assert.equal((await t.app.inject({ method: 'POST', url: '/heartbeat' })).statusCode, 200);
  });

  it('the bearer scheme is case-insensitive (RFC 9110): "bearer <token>" is accepted', async () => {
    for (const scheme of ['bearer', 'BEARER', 'Bearer']) {
      const res = await t.app.inject({ url: '/online_clients', headers: { authorization: `${scheme} ${token}` } });
      assert.equal(res.statusCode, 200, scheme);
    }
    const wrong = await t.app.inject({ url: '/online_clients', headers: { authorization: 'bearer nope' } });
    assert.equal(wrong.statusCode, 401);
  });

  it('wrong tokens were never throttled: past 20 from one address, its guesses are refused without a comparison', async () => {
    const guess = (value: string, address = '192.0.2.7') =>
      t.app.inject({ url: '/online_clients', remoteAddress: address, headers: { authorization: `Bearer ${value}` } });
    for (let n = 0; n < 20; n++) assert.equal((await guess(`guess-${n}`)).statusCode, 401, `guess ${n}`);
    const throttled = await guess('guess-20');
    assert.equal(throttled.statusCode, 429);
    assert.ok(Number(throttled.headers['retry-after']) >= 1);
    assert.equal((await guess(token)).statusCode, 429, 'even the right token waits: guessing cannot go on');
    assert.equal((await guess(token, '192.0.2.8')).statusCode, 200, 'another address is not held up');
    t.clock.advance(6_000);
    assert.equal((await guess(token)).statusCode, 200, 'ten a minute come back');
  });
});

describe('channels outside --channels', () => {
  it('junk channel names filled the channel cap and locked out real ones: now only listed channels are tracked', async () => {
    const t = await testApp({
      ingestRateLimit: null,
      readRateLimit: null,
      addressRateLimit: null,
      maxChannels: 5,
      allowedChannels: Object.freeze(['checkout', 'room-*']),
    });
    try {
      const beat = (id: string, channel: string) =>
        t.app.inject({ method: 'POST', url: '/heartbeat', headers: json, payload: { client_id: id, channel } });
      for (let n = 0; n < 20; n++) {
        const junk = await beat(`spammer-${n}`, `junk-${n}`);
        assert.equal(junk.statusCode, 200, 'the heartbeat itself still counts');
        assert.match(String(junk.headers.warning), /not in the configured --channels/);
      }
      const real = await beat('shopper', 'checkout');
      assert.equal(real.statusCode, 200);
      assert.equal(real.headers.warning, undefined);
      assert.equal((await beat('player', 'room-42')).headers.warning, undefined, 'a prefix matches');
      const count = async (channel: string) =>
        (await t.app.inject({ url: `/online_clients?channel=${channel}` })).json<{ online_clients_count: number }>()
          .online_clients_count;
      assert.equal(await count('checkout'), 1);
      assert.equal(await count('room-42'), 1);
      assert.equal(await count('junk-3'), 0);
      assert.equal((await t.app.inject({ url: '/online_clients' })).json().online_clients_count, 22);
      const metrics = (await t.app.inject({ url: '/metrics' })).body;
      assert.match(metrics, /online_stats_heartbeats_rejected_total\{reason="channel_not_allowed"\} 20/);
    } finally {
      await t.close();
    }
  });
});

describe('batch ingest needs a credential and pays per id', () => {
  const batch = (ids: number, headers: Record<string, string> = gateway): InjectOptions => ({
    method: 'POST',
    url: '/heartbeats',
    headers,
    payload: { client_ids: Array.from({ length: ids }, (_, n) => `id-${n}`) },
  });

  it('was open to anyone without a token: now it is off, 403 naming the setting, until a token is configured', async () => {
    const t = await testApp();
    try {
      const res = await t.app.inject(batch(1, json));
      assert.equal(res.statusCode, 403, res.body);
      assert.equal(res.json().code, 'OS_BATCH_INGEST_OFF');
      assert.match(res.json().message, /--ingest-token/);
      assert.equal((await t.app.inject({ url: '/online_clients' })).json().online_clients_count, 0);
    } finally {
      await t.close();
    }
  });

  it('the ingest token allows batch ingest and nothing else; the API token allows it too', async () => {
    const t = await testApp({ apiToken: 'api-token-0123456789', ingestToken: GATEWAY, readRateLimit: null });
    try {
      assert.equal((await t.app.inject(batch(3))).statusCode, 200);
      const api = { ...json, authorization: 'Bearer api-token-0123456789' };
      assert.equal((await t.app.inject(batch(3, api))).statusCode, 200);
      assert.equal((await t.app.inject(batch(3, json))).statusCode, 401);
      const read = await t.app.inject({ url: '/online_clients', headers: { authorization: `Bearer ${GATEWAY}` } });
      assert.equal(read.statusCode, 401, 'the ingest token is not a read token');
    } finally {
      await t.close();
    }
  });

  it('counted requests, not ids (10,000 ids for the price of one): each id now spends one unit of the budget', async () => {
    const t = await testApp({ ingestToken: GATEWAY, batchRateLimit: { count: 100, periodMs: 1000, burst: 100 } });
    try {
      assert.equal((await t.app.inject(batch(100))).statusCode, 200, 'a whole burst of ids at once');
      const over = await t.app.inject(batch(1));
      assert.equal(over.statusCode, 429, 'not one more id in the same instant');
      assert.ok(Number(over.headers['retry-after']) >= 1);
      t.clock.advance(500);
      assert.equal((await t.app.inject(batch(51))).statusCode, 429, 'half a second earns 50 ids, not 51');
      assert.equal((await t.app.inject(batch(50))).statusCode, 200);
      // A batch larger than the whole burst passes only when the budget is whole, and leaves a debt.
      t.clock.advance(1000);
      assert.equal((await t.app.inject(batch(300))).statusCode, 200);
      t.clock.advance(1000);
      assert.equal((await t.app.inject(batch(1))).statusCode, 429, 'still paying for the 300');
      t.clock.advance(2000);
      assert.equal((await t.app.inject(batch(1))).statusCode, 200);
      const online = (await t.app.inject({ url: '/online_clients' })).json().online_clients_count;
      assert.equal(online, 300, 'the refused batches added nobody');
    } finally {
      await t.close();
    }
  });
});

describe('health, docs and metrics', () => {
  let t: TestApp;
  before(async () => (t = await testApp()));
  after(() => t.close());

  it('/healthz and /readyz answer 200 while the store is writable', async () => {
    assert.deepEqual((await t.app.inject({ url: '/healthz' })).json(), { status: 'ok' });
    assert.deepEqual((await t.app.inject({ url: '/readyz' })).json(), { status: 'ready' });
  });

  it('/readyz answers 503 while shutting down', async () => {
    t.app.deps.lifecycle.shuttingDown = true;
    const res = await t.app.inject({ url: '/readyz' });
    t.app.deps.lifecycle.shuttingDown = false;
    assert.equal(res.statusCode, 503);
  });

  it('/docs serves Swagger UI and /openapi.json documents the demo paths', async () => {
    const docs = await t.app.inject({ url: '/docs/' });
    assert.equal(docs.statusCode, 200);
    assert.match(docs.body, /swagger/i);
    const spec = (await t.app.inject({ url: '/openapi.json' })).json();
    for (const path of [
      '/heartbeat',
      '/leave',
      '/heartbeats',
      '/online_clients',
      '/total_users',
      '/analytics/daily',
      '/events',
    ]) {
      assert.ok(spec.paths[path], `${path} is documented`);
    }
    assert.ok(spec.paths['/online_clients'].get && spec.paths['/online_clients'].post);
    assert.ok(spec.paths['/total_users'].get && spec.paths['/total_users'].post);
  });

  it('/metrics counts accepted and rejected heartbeats, requests and commits', async () => {
    await t.app.inject({ method: 'POST', url: '/heartbeat', remoteAddress: '192.0.2.50' });
    await t.app.inject({ method: 'POST', url: '/heartbeat', remoteAddress: '192.0.2.50' });
    const text = (await t.app.inject({ url: '/metrics' })).body;
    assert.match(text, /online_stats_heartbeats_accepted_total 1/);
    assert.match(text, /online_stats_heartbeats_rejected_total\{reason="rate_limited"\} 1/);
    assert.match(text, /online_stats_online_clients 1/);
    assert.match(text, /online_stats_http_requests_total\{route="\/heartbeat",method="POST",status="200"\} 1/);
    assert.match(text, /online_stats_store_commit_heartbeats_count 1/);
  });
});

describe('dashboard assets', () => {
  let t: TestApp;
  before(async () => (t = await testApp()));
  after(() => t.close());

  it('did not say why imported users made "last 30 days" disagree with the chart: the page now says so', async () => {
    const page = (await t.app.inject({ url: '/' })).body;
    assert.match(page, /id="coverage"/);
    assert.match(page, /imported from an earlier system included/);
    assert.match(page, /only the days this service recorded/);
  });

  it('a weak tag, a list or * in If-None-Match got 200: now 304, as RFC 9110 13.1.2 has it', async () => {
    const first = await t.app.inject({ url: '/' });
    const etag = String(first.headers.etag);
    assert.match(etag, /^"[\w-]+"$/);
    for (const header of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const res = await t.app.inject({ url: '/', headers: { 'if-none-match': header } });
      assert.equal(res.statusCode, 304, header);
    }
    const other = await t.app.inject({ url: '/', headers: { 'if-none-match': '"other"' } });
    assert.equal(other.statusCode, 200);
  });

  it('"gzip;q=0, identity" still got gzip, and there was no brotli: now the q-values decide', async () => {
    const encodingOf = async (acceptEncoding?: string) => {
      const res = await t.app.inject({
        url: '/',
        headers: acceptEncoding === undefined ? {} : { 'accept-encoding': acceptEncoding },
      });
      assert.equal(res.statusCode, 200);
      return { encoding: res.headers['content-encoding'], body: res.rawPayload };
    };
    const plain = await encodingOf();
    assert.equal(plain.encoding, undefined);
    assert.match(plain.body.toString(), /<html/i);
    assert.equal((await encodingOf('gzip;q=0, identity')).encoding, undefined);
    const gzip = await encodingOf('gzip');
    assert.equal(gzip.encoding, 'gzip');
    assert.deepEqual(gunzipSync(gzip.body), plain.body);
    const br = await encodingOf('gzip, deflate, br');
    assert.equal(br.encoding, 'br');
    assert.deepEqual(brotliDecompressSync(br.body), plain.body);
    assert.equal((await encodingOf('br;q=0, gzip')).encoding, 'gzip');
  });
});
