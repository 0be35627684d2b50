// Concurrency history on the API: /analytics/concurrency (JSON and CSV), /analytics/peaks, the summary, the metrics,
// bad input, and the peaks and minutes after SIGKILL and SIGTERM of the real service.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { SECRET, T0, startServer, tempDir, testApp, type TestApp } from './support/app.js';

const MINUTE = 60_000;
const open: TestApp[] = [];
after(async () => {
  for (const t of open) await t.close();
});

async function app(overrides: Parameters<typeof testApp>[0] = {}): Promise<TestApp> {
  const t = await testApp({ readRateLimit: null, ...overrides });
  open.push(t);
  return t;
}

const beat = (t: TestApp, clientId: string, channel?: string) =>
  t.app.inject({
    method: 'POST',
    url: '/heartbeat',
    payload: channel ? { client_id: clientId, channel } : { client_id: clientId },
  });
const get = async (t: TestApp, url: string, headers: Record<string, string> = {}) => {
  const res = await t.app.inject({ url, headers });
  return {
    status: res.statusCode,
    type: res.headers['content-type'],
    body: res.body,
    json: (): unknown => res.json(),
  };
};
const iso = (ms: number) => new Date(ms).toISOString();

describe('concurrency history on the API', () => {
  it('answers each minute with its exact highest and lowest count and mean, by default the last 24 hours', async () => {
    const t = await app();
    t.clock.advance(10_000);
    await beat(t, 'a');
    await beat(t, 'b', 'checkout');
    t.clock.advance(20_000);
    await beat(t, 'c', 'checkout');
    t.clock.advance(40_000); // T0 + 70 s
    const answer = (await get(t, '/analytics/concurrency')).json() as {
      interval: string;
      channel: null;
      points: { start: string; max: number; min: number; mean: number }[];
    };
    assert.equal(answer.interval, 'minute');
    assert.equal(answer.channel, null);
    // From 24 hours ago (rounded down to its minute) to now: 1,441 minutes.
    assert.equal(answer.points.length, 24 * 60 + 1);
    assert.equal(answer.points[0]?.start, iso(T0 + 70_000 - 24 * 60 * MINUTE - 10_000));
    const [first, running] = answer.points.slice(-2);
    assert.deepEqual(first, {
      start: iso(T0),
      max: 3,
      min: 0,
      mean: Math.round(((2 * 20 + 3 * 30) / 60) * 1000) / 1000,
    });
    assert.deepEqual(running, { start: iso(T0 + MINUTE), max: 3, min: 3, mean: 3 });

    const checkout = (await get(t, `/analytics/concurrency?channel=checkout&from=${iso(T0)}`)).json() as {
      channel: string;
      points: { max: number }[];
    };
    assert.equal(checkout.channel, 'checkout');
    assert.deepEqual(
      checkout.points.map((p) => p.max),
      [2, 2],
    );
    const unknown = (await get(t, `/analytics/concurrency?channel=nowhere&from=${iso(T0)}`)).json() as {
      points: { max: number; min: number; mean: number }[];
    };
    assert.deepEqual(unknown.points, [
      { start: iso(T0), max: 0, min: 0, mean: 0 },
      { start: iso(T0 + MINUTE), max: 0, min: 0, mean: 0 },
    ]);
  });

  it('answers CSV with Accept: text/csv or format=csv, for the series and for the daily figures', async () => {
    const t = await app();
    await beat(t, 'a');
    t.clock.advance(MINUTE + 1000);
    const byAccept = await get(t, `/analytics/concurrency?from=${iso(T0)}`, { accept: 'text/csv' });
    assert.equal(byAccept.status, 200);
    assert.match(String(byAccept.type), /^text\/csv/);
    assert.equal(byAccept.body, `start,max,min,mean\r\n${iso(T0)},1,1,1\r\n${iso(T0 + MINUTE)},1,1,1\r\n`);
    const byFormat = await get(t, `/analytics/concurrency?from=${iso(T0)}&format=csv`);
    assert.equal(byFormat.body, byAccept.body);
    // JSON stays the default, and wins when the client prefers it.
    assert.match(
      String((await get(t, '/analytics/concurrency', { accept: 'application/json, text/csv;q=0.5' })).type),
      /json/,
    );
    const daily = await get(t, '/analytics/daily?from=2026-03-09&to=2026-03-10&format=csv');
    assert.equal(daily.body, 'day,dau,wau,mau,new,stickiness\r\n2026-03-09,0,0,0,0,0\r\n2026-03-10,1,1,1,1,1\r\n');
    assert.equal((await get(t, '/analytics/daily?format=xml')).status, 400);
  });

  it('hours and days: the same figures at a coarser grain', async () => {
    const t = await app();
    await beat(t, 'a');
    await beat(t, 'b');
    t.clock.advance(15 * MINUTE); // both timed out at 12:10 (the default timeout is 10 min)
    const hours = (await get(t, `/analytics/concurrency?interval=hour&from=${iso(T0 - 60 * MINUTE)}`)).json() as {
      points: { start: string; max: number; min: number }[];
    };
    assert.deepEqual(
      hours.points.map((p) => [p.start, p.max, p.min]),
      [
        [iso(T0 - 60 * MINUTE), 0, 0],
        [iso(T0), 2, 0],
      ],
    );
    const days = (await get(t, '/analytics/concurrency?interval=day&from=2026-03-10')).json() as {
      points: { start: string; max: number; min: number; mean: number }[];
    };
    assert.deepEqual(
      days.points.map((p) => [p.start, p.max, p.min]),
      [['2026-03-10T00:00:00.000Z', 2, 0]],
    );
    // 2 online for 10 minutes of the 12 h 16 min of the day so far.
    assert.equal(days.points[0]?.mean, Math.round(((2 * 600.001) / 60 / (12 * 60 + 16)) * 1000) / 1000);
  });

  it('refuses bad input with a 400 naming the parameter', async () => {
    const t = await app();
    const cases: [string, RegExp][] = [
      ['/analytics/concurrency?interval=week', /interval/],
      ['/analytics/concurrency?from=yesterday', /^from: "yesterday" is not an ISO 8601/],
      ['/analytics/concurrency?to=2026-13-45', /^to: /],
      [`/analytics/concurrency?from=${iso(T0)}&to=${iso(T0 - MINUTE)}`, /^from \(.*\) is after to/],
      ['/analytics/concurrency?from=2026-03-01', /^interval: minute needs \d+ points for this range, more than 1500/],
      [
        '/analytics/concurrency?interval=minute&from=2026-02-01&to=2026-02-01T01:00:00Z',
        /^from: minutes are kept for 14 days/,
      ],
      ['/analytics/concurrency?channel=', /channel/],
      ['/analytics/peaks?channel=', /channel/],
    ];
    for (const [url, message] of cases) {
      const res = await get(t, url);
      assert.equal(res.status, 400, url);
      assert.match((res.json() as { message: string }).message, message, url);
    }
  });

  it("peaks: today's, the last 24 hours', 7 days' and the all-time one, with their instants; in the summary and metrics", async () => {
    const t = await app();
    for (const id of ['a', 'b', 'c']) await beat(t, id, 'home');
    t.clock.advance(30 * MINUTE); // all timed out (the default timeout is 10 min)
    await beat(t, 'd');
    const peaks = (await get(t, '/analytics/peaks')).json();
    const at = iso(T0);
    assert.deepEqual(peaks, {
      channel: null,
      online: 1,
      today: { online: 3, at },
      last_24h: { online: 3, at },
      last_7d: { online: 3, at },
      all_time: { online: 3, at },
    });
    const home = (await get(t, '/analytics/peaks?channel=home')).json() as { online: number; all_time: unknown };
    assert.deepEqual([home.online, home.all_time], [0, { online: 3, at }]);
    // The next day (UTC), today's peak starts again; the record stays.
    t.clock.advance(12 * 60 * MINUTE);
    await beat(t, 'e');
    const tomorrow = (await get(t, '/analytics/peaks')).json() as {
      today: unknown;
      last_24h: unknown;
      all_time: unknown;
    };
    assert.deepEqual(tomorrow.today, { online: 1, at: iso(t.clock.nowMs()) });
    assert.deepEqual(tomorrow.all_time, { online: 3, at });
    const summary = (await get(t, '/analytics/summary')).json() as { peaks: unknown };
    assert.deepEqual(summary.peaks, { today: tomorrow.today, all_time: { online: 3, at } });
    const metrics = (await get(t, '/metrics')).body;
    assert.match(metrics, /^online_stats_online_peak\{period="today"\} 1$/m);
    assert.match(metrics, /^online_stats_online_peak\{period="all_time"\} 3$/m);
  });

  it('needs the token like every read when one is configured', async () => {
    const t = await app({ apiToken: 'read-token-0123456789' });
    for (const url of ['/analytics/concurrency', '/analytics/peaks']) {
      assert.equal((await get(t, url)).status, 401, url);
      assert.equal((await get(t, url, { authorization: 'Bearer read-token-0123456789' })).status, 200, url);
    }
  });
});

describe('history of the real service across SIGKILL and SIGTERM', () => {
  const args = (dataDir: string) => [
    '--data-dir',
    dataDir,
    '--identity-secret',
    SECRET,
    '--read-rate-limit',
    'off',
    '--heartbeat-timeout',
    '10m',
  ];
  const peaksOf = async (url: string) =>
    (await (await fetch(`${url}/analytics/peaks`)).json()) as { online: number; today: unknown; all_time: unknown };
  const minutesOf = async (url: string, fromMs: number) =>
    (
      (await (await fetch(`${url}/analytics/concurrency?from=${iso(fromMs)}`)).json()) as {
        points: { start: string; max: number; min: number; mean: number }[];
      }
    ).points;

  it('keeps every peak reached after kill -9, and goes on from the count without a dip', async () => {
    const dir = tempDir();
    try {
      let server = await startServer(args(dir.path));
      const startedMs = Date.now();
      for (let n = 0; n < 20; n++)
        await fetch(`${server.url}/heartbeat`, { method: 'POST', headers: { 'x-client-id': `c${n}` } });
      const before = await peaksOf(server.url);
      assert.equal(before.online, 20);
      assert.deepEqual((before.all_time as { online: number }).online, 20);
      server.child.kill('SIGKILL');
      await server.exited;

      server = await startServer(args(dir.path));
      try {
        const afterKill = await peaksOf(server.url);
        assert.equal(afterKill.online, 20, 'the online count comes back from the store');
        assert.deepEqual(afterKill.all_time, before.all_time, 'the record survived');
        assert.deepEqual(afterKill.today, before.today, "today's peak survived (its minute was saved with it)");
        // No dip: every minute since the restart has the 20 as its lowest count.
        const minutes = await minutesOf(server.url, startedMs);
        const last = minutes[minutes.length - 1];
        assert.equal(last?.max, 20);
        assert.equal(last?.min, 20, 'no false dip at the restart');
      } finally {
        server.child.kill('SIGTERM');
        assert.equal(await server.exited, 0);
      }
      // After SIGTERM too.
      server = await startServer(args(dir.path));
      try {
        assert.deepEqual((await peaksOf(server.url)).all_time, before.all_time);
      } finally {
        server.child.kill('SIGTERM');
        await server.exited;
      }
    } finally {
      dir.remove();
    }
  });
});
