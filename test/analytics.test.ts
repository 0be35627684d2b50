// Analytics over HTTP: daily actives, new users, rolling weekly/monthly actives, stickiness, summary, CORS.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { shiftDay } from '../src/calendar.js';
import { HLL_REGISTERS } from '../src/store/hll.js';
import { DATABASE_FILE } from '../src/store/sqlite.js';
import { testApp, type TestApp } from './support/app.js';

const DAY = 86_400_000;
const json = { 'content-type': 'application/json' };
const GATEWAY = 'gateway-token-0123456789';

describe('analytics', () => {
  let t: TestApp;
  before(async () => {
    t = await testApp({ ingestRateLimit: null, readRateLimit: null, timeZone: 'Europe/Berlin', ingestToken: GATEWAY });
    // T0 is 2026-03-10 12:00 UTC (13:00 in Berlin). Day 1: 300 users; day 2: 100 of them and 50 new; day 9: 10 old
    // ones.
    const batch = async (ids: string[]) => {
      const res = await t.app.inject({
        method: 'POST',
        url: '/heartbeats',
        headers: { ...json, authorization: `Bearer ${GATEWAY}` },
        payload: { client_ids: ids },
      });
      assert.equal(res.statusCode, 200);
    };
    await batch(Array.from({ length: 300 }, (_, n) => `u${n}`));
    t.clock.advance(DAY);
    await batch([...Array.from({ length: 100 }, (_, n) => `u${n}`), ...Array.from({ length: 50 }, (_, n) => `v${n}`)]);
    t.clock.advance(7 * DAY);
    await batch(Array.from({ length: 10 }, (_, n) => `u${n + 200}`));
  });
  after(() => t.close());

  it('dau and new are exact per day of the configured time zone; wau, mau and stickiness follow', async () => {
    const res = await t.app.inject({ url: '/analytics/daily?from=2026-03-09&to=2026-03-18' });
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json();
    assert.equal(body.time_zone, 'Europe/Berlin');
    const byDay = new Map<string, { dau: number; wau: number; mau: number; new: number; stickiness: number }>(
      body.days.map((d: { day: string }) => [d.day, d]),
    );
    assert.equal(body.days.length, 10);
    assert.deepEqual(byDay.get('2026-03-09'), { day: '2026-03-09', dau: 0, wau: 0, mau: 0, new: 0, stickiness: 0 });
    const day1 = byDay.get('2026-03-10')!;
    assert.equal(day1.dau, 300);
    assert.equal(day1.new, 300);
    assert.ok(Math.abs(day1.wau - 300) <= 9 && day1.wau >= 300, `wau ${day1.wau}`);
    const day2 = byDay.get('2026-03-11')!;
    assert.equal(day2.dau, 150);
    assert.equal(day2.new, 50);
    assert.ok(Math.abs(day2.wau - 350) <= 11, `wau ${day2.wau} is about 350`);
    assert.ok(Math.abs(day2.mau - 350) <= 11, `mau ${day2.mau} is about 350`);
    assert.ok(Math.abs(day2.stickiness - 150 / 350) < 0.02);
    const day9 = byDay.get('2026-03-18')!;
    assert.equal(day9.dau, 10);
    assert.equal(day9.new, 0);
    assert.equal(day9.wau, 10, 'day 2 is 7 days back, outside the weekly window ending day 9');
    assert.ok(Math.abs(day9.mau - 350) <= 11, `mau ${day9.mau}`);
    assert.equal(byDay.get('2026-03-15')!.dau, 0);
  });

  it('the default range is the last 30 days, ending today', async () => {
    const body = (await t.app.inject({ url: '/analytics/daily' })).json();
    assert.equal(body.days.length, 30);
    assert.equal(body.days.at(-1).day, '2026-03-18');
    assert.equal(body.days[0].day, '2026-02-17');
  });

  it('a bad range is a 400 naming the problem', async () => {
    const cases: [string, RegExp][] = [
      ['from=2026-03-10&to=2026-03-01', /after/],
      ['from=2024-01-01&to=2026-03-01', /366/],
      ['from=2026-02-30', /from/],
      ['to=yesterday', /to/],
    ];
    for (const [query, message] of cases) {
      const res = await t.app.inject({ url: `/analytics/daily?${query}` });
      assert.equal(res.statusCode, 400, query);
      assert.match(res.json().message, message, query);
    }
  });

  it('a day that does not exist in to= (without from=) is a 400 naming to, not a 500', async () => {
    for (const query of ['to=2026-02-30', 'to=0099-01-01', 'to=2026-13-01']) {
      const res = await t.app.inject({ url: `/analytics/daily?${query}` });
      assert.equal(res.statusCode, 400, query);
      assert.match(res.json().message, /^to: /, query);
    }
  });

  it("the summary gives online now, today's and the all-time peak and active in the last 1, 7 and 30 days in one read", async () => {
    // Day 2's heartbeats were exactly 7 days ago: the cutoff is inclusive, as in the demo (>=).
    const body = (await t.app.inject({ url: '/analytics/summary' })).json();
    assert.deepEqual(body, {
      online_clients_count: 10,
      // Today (in Berlin) 10 came online at once; on the first day of the seed, 300.
      peaks: {
        today: { online: 10, at: '2026-03-18T12:00:00.000Z' },
        all_time: { online: 300, at: '2026-03-10T12:00:00.000Z' },
      },
      active: { '1': 10, '7': 160, '30': 350 },
      top_channels: [],
      time_zone: 'Europe/Berlin',
    });
  });
});

describe('a year of /analytics/daily', () => {
  /** Fills a year of finished days with dense sketches (about 40,000 distinct a day), as a busy year leaves them. */
  function seedYear(dataDir: string, lastDay: string, days: number): void {
    const db = new Database(join(dataDir, DATABASE_FILE));
    const insert = db.prepare('INSERT OR REPLACE INTO day_sketches (day, sketch) VALUES (?, ?)');
    let state = 7;
    const rank = () => 1 + ((state = (state * 1103515245 + 12345) % 2 ** 31) % 3);
    const counts = db.prepare('INSERT OR REPLACE INTO daily_activity (day, active, new) VALUES (?, ?, ?)');
    db.transaction(() => {
      for (let n = 0; n < days; n++) {
        const sketch = Buffer.alloc(HLL_REGISTERS);
        for (let i = 0; i < HLL_REGISTERS; i++) sketch[i] = rank();
        insert.run(shiftDay(lastDay, -n), sketch);
        counts.run(shiftDay(lastDay, -n), 40_000, 100);
      }
    })();
    db.close();
  }

  it("held bystanders' heartbeats until it finished (2.3 s): now they are answered while it merges", async () => {
    const t = await testApp({ readRateLimit: null, batchRateLimit: null, ingestToken: GATEWAY });
    try {
      seedYear(t.dataDir, '2026-03-09', 400);
      const order: string[] = [];
      const read = t.app
        .inject({ url: '/analytics/daily?from=2025-03-10&to=2026-03-10' })
        .then((res) => (order.push('read'), res));
      await new Promise((resolve) => setImmediate(resolve));
      const beat = t.app
        .inject({ method: 'POST', url: '/heartbeat', headers: { 'x-client-id': 'bystander' } })
        .then((res) => (order.push('heartbeat'), res));
      const [readRes, beatRes] = await Promise.all([read, beat]);
      assert.equal(beatRes.statusCode, 200);
      assert.equal(readRes.statusCode, 200, readRes.body);
      assert.deepEqual(order, ['heartbeat', 'read'], 'the heartbeat did not wait for the whole year');
      const days = readRes.json().days as { day: string; wau: number; mau: number }[];
      assert.equal(days.length, 366);

      // A second read of the same year comes from the settled windows, with the same figures, and
      // today's windows still follow today's heartbeats.
      const again = (await t.app.inject({ url: '/analytics/daily?from=2025-03-10&to=2026-03-10' })).json();
      assert.deepEqual(again.days.slice(0, -1), days.slice(0, -1));
      const before = again.days.at(-1).wau as number;
      const more = await t.app.inject({
        method: 'POST',
        url: '/heartbeats',
        headers: { ...json, authorization: `Bearer ${GATEWAY}` },
        payload: { client_ids: Array.from({ length: 5000 }, (_, n) => `late-${n}`) },
      });
      assert.equal(more.statusCode, 200);
      const after = (await t.app.inject({ url: '/analytics/daily?from=2026-03-10&to=2026-03-10' })).json();
      assert.ok(after.days[0].wau > before, `today's weekly actives rose (${before} -> ${after.days[0].wau})`);
    } finally {
      await t.close();
    }
  });

  it('cost one read like any other: a year now spends 12 units of the read budget', async () => {
    const t = await testApp({ readRateLimit: { count: 1, periodMs: 1000, burst: 1 } });
    try {
      const read = (url: string) => t.app.inject({ url, headers: { 'x-client-id': 'analyst' } });
      assert.equal((await read('/analytics/daily?from=2025-03-10&to=2026-03-10')).statusCode, 200);
      t.clock.advance(1000);
      assert.equal((await read('/online_clients')).statusCode, 429, 'one second pays for one read, not twelve');
      t.clock.advance(10_000);
      assert.equal((await read('/online_clients')).statusCode, 429);
      t.clock.advance(1000);
      assert.equal((await read('/online_clients')).statusCode, 200, 'twelve seconds pay for the year');
      t.clock.advance(1000);
      assert.equal((await read('/analytics/daily')).statusCode, 200, 'the default 30 days cost one read');
      t.clock.advance(1000);
      assert.equal((await read('/online_clients')).statusCode, 200);
    } finally {
      await t.close();
    }
  });
});

describe('CORS', () => {
  it('answers preflights for configured origins only', async () => {
    const t = await testApp({ corsOrigins: Object.freeze(['https://app.example']) });
    try {
      const preflight = (origin: string) =>
        t.app.inject({
          method: 'OPTIONS',
          url: '/heartbeat',
          headers: {
            origin,
            'access-control-request-method': 'POST',
            'access-control-request-headers': 'content-type,x-client-id',
          },
        });
      const allowed = await preflight('https://app.example');
      assert.equal(allowed.statusCode, 204);
      assert.equal(allowed.headers['access-control-allow-origin'], 'https://app.example');
      assert.match(String(allowed.headers['access-control-allow-headers']), /x-client-id/);
      const other = await preflight('https://evil.example');
      assert.equal(other.headers['access-control-allow-origin'], undefined);
      const read = await t.app.inject({ url: '/online_clients', headers: { origin: 'https://app.example' } });
      assert.equal(read.headers['access-control-allow-origin'], 'https://app.example');
    } finally {
      await t.close();
    }
  });
});
