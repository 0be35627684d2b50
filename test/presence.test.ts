// Per-user presence and data rights over HTTP on SQLite: lookups, opt-out, erasure (down to the bytes on disk),
// retention, and the bad input each route refuses.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { Pseudonymizer, clientIdentity } from '../src/identity.js';
import { DATABASE_FILE } from '../src/store/sqlite.js';
import { SECRET, T0, testApp, type TestApp } from './support/app.js';
import { until } from './support/poll.js';

const TOKEN = 'presence-test-token-0123456789abcdef';
const auth = { authorization: `Bearer ${TOKEN}` };
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

const beat = (t: TestApp, clientId: string, body: Record<string, unknown> = {}) =>
  t.app.inject({ method: 'POST', url: '/heartbeat', headers: { 'x-client-id': clientId }, payload: body });

const lookUp = async (t: TestApp, body: unknown) => {
  const answer = await t.app.inject({ method: 'POST', url: '/presence', headers: auth, payload: body as object });
  assert.equal(answer.statusCode, 200, answer.body);
  return answer.json<{ clients: { client_id: string; online: boolean; last_seen: string }[] }>().clients;
};

const online = async (t: TestApp) =>
  (await t.app.inject({ url: '/online_clients', headers: auth })).json().online_clients_count as number;

describe('POST /presence', () => {
  it('answers each id asked, in order, with Telegram-style last-seen buckets, and nothing else', async () => {
    const t = await testApp({ apiToken: TOKEN, readRateLimit: null, ingestRateLimit: null });
    try {
      assert.equal((await beat(t, 'alice', { channel: 'chat' })).statusCode, 200);
      await beat(t, 'bob');
      assert.deepEqual(await lookUp(t, { client_ids: ['alice', 'nobody', 'bob'] }), [
        { client_id: 'alice', online: true, last_seen: 'now' },
        { client_id: 'nobody', online: false, last_seen: 'never' },
        { client_id: 'bob', online: true, last_seen: 'now' },
      ]);
      assert.deepEqual(
        (await lookUp(t, { client_ids: ['alice', 'bob'], channel: 'chat' })).map((client) => client.online),
        [true, false],
      );
      const ages: [number, string][] = [
        [HOUR, 'recently'],
        [4 * DAY, 'within_week'],
        [8 * DAY, 'within_month'],
        [31 * DAY, 'long_ago'],
      ];
      for (const [ageMs, bucket] of ages) {
        t.clock.set(T0 + ageMs);
        await beat(t, 'carol');
        assert.deepEqual(await lookUp(t, { client_ids: ['alice'] }), [
          { client_id: 'alice', online: false, last_seen: bucket },
        ]);
      }
    } finally {
      await t.close();
    }
  });

  it('with --presence-detail exact, gives the instant', async () => {
    const t = await testApp({ apiToken: TOKEN, presenceDetail: 'exact' });
    try {
      await beat(t, 'alice');
      t.clock.set(T0 + HOUR);
      assert.deepEqual(await lookUp(t, { client_ids: ['alice', 'nobody'] }), [
        { client_id: 'alice', online: false, last_seen: new Date(T0).toISOString() },
        { client_id: 'nobody', online: false, last_seen: 'never' },
      ]);
    } finally {
      await t.close();
    }
  });

  it('a client that opted out counts online, yet looks never seen until it beats without the flag', async () => {
    const t = await testApp({ apiToken: TOKEN, readRateLimit: null, ingestRateLimit: null });
    try {
      await beat(t, 'shy', { presence: false });
      assert.equal(await online(t), 1);
      assert.deepEqual(await lookUp(t, { client_ids: ['shy'] }), [
        { client_id: 'shy', online: false, last_seen: 'never' },
      ]);
      await beat(t, 'shy');
      assert.deepEqual(await lookUp(t, { client_ids: ['shy'] }), [
        { client_id: 'shy', online: true, last_seen: 'now' },
      ]);
      const batch = await t.app.inject({
        method: 'POST',
        url: '/heartbeats',
        headers: auth,
        payload: { client_ids: ['shy', 'quiet'], presence: false },
      });
      assert.equal(batch.statusCode, 200, batch.body);
      assert.equal(await online(t), 2);
      assert.deepEqual(
        (await lookUp(t, { client_ids: ['shy', 'quiet'] })).map((client) => client.last_seen),
        ['never', 'never'],
      );
      assert.equal((await beat(t, 'shy', { presence: 'no' })).statusCode, 400, 'presence must be a boolean');
    } finally {
      await t.close();
    }
  });

  it('needs the API token: 403 saying why while none is configured, 401 without it', async () => {
    const open = await testApp();
    try {
      for (const request of [
        { method: 'POST' as const, url: '/presence', payload: { client_ids: ['a'] } },
        { method: 'POST' as const, url: '/clients/erase', payload: { client_ids: ['a'] } },
        { method: 'DELETE' as const, url: '/clients/a' },
      ]) {
        const answer = await open.app.inject(request);
        assert.equal(answer.statusCode, 403, request.url);
        assert.match(answer.json().message, /--api-token/);
      }
    } finally {
      await open.close();
    }
    const t = await testApp({ apiToken: TOKEN });
    try {
      const answer = await t.app.inject({ method: 'POST', url: '/presence', payload: { client_ids: ['a'] } });
      assert.equal(answer.statusCode, 401);
    } finally {
      await t.close();
    }
  });

  it('refuses bad input with a 400 naming the field', async () => {
    const t = await testApp({ apiToken: TOKEN, presenceRateLimit: null });
    try {
      const cases: [unknown, RegExp][] = [
        [{ client_ids: [] }, /client_ids/],
        [{ client_ids: Array.from({ length: 1001 }, (_, i) => `c${i}`) }, /client_ids/],
        [{ client_ids: ['x'.repeat(129)] }, /client_ids\/0/],
        [{ client_ids: [42] }, /client_ids\/0/],
        [{ client_ids: 'alice' }, /client_ids/],
        [{}, /client_ids/],
        [{ client_ids: ['a'], extra: 1 }, /extra|additional/],
      ];
      for (const url of ['/presence', '/clients/erase'])
        for (const [body, field] of cases) {
          const answer = await t.app.inject({ method: 'POST', url, headers: auth, payload: body as object });
          assert.equal(answer.statusCode, 400, `${url} ${JSON.stringify(body).slice(0, 60)}`);
          assert.match(answer.json().message, field);
        }
      const long = await t.app.inject({ method: 'DELETE', url: `/clients/${'x'.repeat(129)}`, headers: auth });
      assert.equal(long.statusCode, 400);
      assert.match(long.json().message, /client_id/);
      // 1,000 ids is allowed.
      const most = await lookUp(t, { client_ids: Array.from({ length: 1000 }, (_, i) => `c${i}`) });
      assert.equal(most.length, 1000);
    } finally {
      await t.close();
    }
  });

  it('spends one unit of its own budget per id: a caller over it gets 429', async () => {
    const t = await testApp({ apiToken: TOKEN, presenceRateLimit: { count: 10, periodMs: 1000, burst: 10 } });
    try {
      const ids = Array.from({ length: 10 }, (_, i) => `c${i}`);
      const first = await t.app.inject({
        method: 'POST',
        url: '/presence',
        headers: auth,
        payload: { client_ids: ids },
      });
      assert.equal(first.statusCode, 200);
      assert.match(String(first.headers['ratelimit-policy']), /"presence";q=10/);
      const second = await t.app.inject({
        method: 'POST',
        url: '/presence',
        headers: auth,
        payload: { client_ids: ['a'] },
      });
      assert.equal(second.statusCode, 429);
      // Heartbeats have their own budget: still allowed.
      assert.equal((await beat(t, 'alice')).statusCode, 200);
    } finally {
      await t.close();
    }
  });
});

describe('erasure', () => {
  it('DELETE /clients/{id} and POST /clients/erase remove the client, say how many were found, and repeat safely', async () => {
    const t = await testApp({ apiToken: TOKEN, readRateLimit: null, ingestRateLimit: null });
    try {
      await beat(t, 'alice', { channel: 'chat' });
      await beat(t, 'bob', { channel: 'chat' });
      await beat(t, 'carol');
      const one = await t.app.inject({ method: 'DELETE', url: '/clients/alice', headers: auth });
      assert.deepEqual(one.json(), { found: 1 });
      assert.deepEqual((await t.app.inject({ method: 'DELETE', url: '/clients/alice', headers: auth })).json(), {
        found: 0,
      });
      assert.equal(await online(t), 2);
      const chat = await t.app.inject({ url: '/online_clients?channel=chat', headers: auth });
      assert.equal(chat.json().online_clients_count, 1);
      const many = await t.app.inject({
        method: 'POST',
        url: '/clients/erase',
        headers: auth,
        payload: { client_ids: ['bob', 'nobody', 'alice'] },
      });
      assert.deepEqual(many.json(), { found: 1 });
      assert.equal(await online(t), 1);
      assert.deepEqual(await lookUp(t, { client_ids: ['alice', 'bob', 'carol'] }), [
        { client_id: 'alice', online: false, last_seen: 'never' },
        { client_id: 'bob', online: false, last_seen: 'never' },
        { client_id: 'carol', online: true, last_seen: 'now' },
      ]);
    } finally {
      await t.close();
    }
  });

  it('leaves no trace of the pseudonym in the database, its WAL or the journal, and drops its limiter entry', async () => {
    const t = await testApp({ apiToken: TOKEN, ingestRateLimit: { count: 1, periodMs: 60_000, burst: 1 } });
    const pseudonym = (clientId: string) =>
      Buffer.from(new Pseudonymizer(SECRET).pseudonym(clientIdentity(clientId)), 'latin1');
    const scan = () => {
      const found = new Map<string, string[]>();
      for (const name of readdirSync(t.dataDir)) {
        const bytes = readFileSync(join(t.dataDir, name));
        for (const clientId of ['erased', 'kept'])
          if (bytes.indexOf(pseudonym(clientId)) >= 0) found.set(clientId, [...(found.get(clientId) ?? []), name]);
      }
      return found;
    };
    try {
      for (let i = 0; i < 50; i++) {
        t.clock.advance(1000);
        // Many records of both, in several folds, so their rows and journal groups are spread around.
        await t.app.inject({
          method: 'POST',
          url: '/heartbeats',
          headers: auth,
          payload: { client_ids: ['erased', 'kept', `other-${i}`], channel: `room-${i % 3}` },
        });
        if (i % 10 === 0) await new Promise((done) => setTimeout(done, 250));
      }
      assert.equal((await beat(t, 'erased')).statusCode, 200);
      assert.equal((await beat(t, 'erased')).statusCode, 429, 'its ingest budget is spent');
      const before = scan();
      assert.ok(before.get('erased')?.length, 'the pseudonym is on disk before the erasure (the scan can fail)');
      const erased = await t.app.inject({ method: 'DELETE', url: '/clients/erased', headers: auth });
      assert.deepEqual(erased.json(), { found: 1 });
      assert.equal((await beat(t, 'erased')).statusCode, 200, 'the limiter forgot it: a fresh budget');
      await t.app.inject({ method: 'DELETE', url: '/clients/erased', headers: auth });
      // The store goes on (heartbeats after the erasure), and within a few saves the fold deletes the rows, the WAL
      // is checkpointed and truncated, and the journal wiped.
      for (let i = 0; i < 5; i++) await beat(t, `after-${i}`);
      await until(
        async () => scan().get('erased') ?? [],
        (files) => files.length === 0,
        5000,
        'the files holding the erased pseudonym',
      );
      assert.ok(scan().get('kept')?.length, 'a client not erased is still stored');
      const db = new Database(join(t.dataDir, DATABASE_FILE), { readonly: true });
      try {
        const rows = db.prepare('SELECT COUNT(*) AS n FROM identities WHERE id = ?').get(pseudonym('erased')) as {
          n: number;
        };
        assert.equal(rows.n, 0);
      } finally {
        db.close();
      }
      // Still none after a restart's replay and close.
      await t.app.close();
      await t.app.deps.store.close();
      assert.equal(scan().has('erased'), false);
    } finally {
      await t.close().catch(() => {});
    }
  });
});
