// The one behaviour suite every Store passes; each store's test file only says how to make one.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createCalendar } from '../src/calendar.js';
import type { Store, StoreOptions } from '../src/store/store.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 2, 10, 12, 0, 0);

export interface StoreFactory {
  /** A new, empty store. `nowMs` is the time it opens at. */
  create(options: StoreOptions, nowMs: number): Promise<Store>;
  /** Closes `store` and opens the same data again (durable stores only). */
  reopen?(store: Store, options: StoreOptions, nowMs: number): Promise<Store>;
  /** Called once after the suite. */
  teardown?(): Promise<void>;
}

/** Named skips: test title -> reason. A divergence must be written down, never silently dropped. */
export type Skips = Record<string, string>;

export function options(overrides: Partial<StoreOptions> = {}): StoreOptions {
  return {
    heartbeatTimeoutMs: 10 * MINUTE,
    maxDays: 400,
    maxChannels: 3,
    calendar: createCalendar('UTC'),
    historyMinuteDays: 14,
    ...overrides,
  };
}

export const id = (n: number): string => {
  // A 16-byte latin1 pseudonym, as identity.ts makes them, spread out so HyperLogLog sees uniform bits.
  const bytes = Buffer.alloc(16);
  let x = (n + 1) * 0x9e3779b1;
  for (let i = 0; i < 16; i++) {
    x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) ^ (x >>> 12) ^ i;
    bytes[i] = x & 0xff;
  }
  return bytes.toString('latin1');
};

const beat = (n: number, channel: string | null = null) => ({ identity: id(n), channel });

export function storeSuite(name: string, factory: StoreFactory, skips: Skips = {}): void {
  describe(`Store contract: ${name}`, () => {
    const open: Store[] = [];
    const make = async (overrides: Partial<StoreOptions> = {}, nowMs = T0) => {
      const store = await factory.create(options(overrides), nowMs);
      open.push(store);
      return store;
    };
    const test = (title: string, fn: () => Promise<void>) => {
      const reason = skips[title];
      if (reason) it(title, { skip: reason }, fn);
      else it(title, fn);
    };
    after(async () => {
      for (const store of open) await store.close().catch(() => {});
      await factory.teardown?.();
    });

    test('a heartbeat puts an identity online, once however often it beats', async () => {
      const store = await make();
      assert.equal(await store.countOnline(T0), 0);
      await store.recordHeartbeats([beat(1)], T0);
      await store.recordHeartbeats([beat(1), beat(2)], T0 + 1000);
      await store.recordHeartbeats([beat(1)], T0 + 2000);
      assert.equal(await store.countOnline(T0 + 2000), 2);
    });

    test('an identity goes offline exactly when the timeout passes, with no sweep lag', async () => {
      const store = await make();
      await store.recordHeartbeats([beat(1)], T0);
      await store.recordHeartbeats([beat(2)], T0 + 5 * MINUTE);
      assert.equal(await store.countOnline(T0 + 10 * MINUTE), 2, 'at exactly the timeout it still counts');
      assert.equal(await store.countOnline(T0 + 10 * MINUTE + 1), 1, 'one ms later it does not');
      assert.equal(await store.countOnline(T0 + 15 * MINUTE + 1), 0);
      await store.recordHeartbeats([beat(1)], T0 + 16 * MINUTE);
      assert.equal(await store.countOnline(T0 + 16 * MINUTE), 1, 'a heartbeat brings it back');
    });

    test('a leave takes an identity offline at once but it stays active', async () => {
      const store = await make();
      await store.recordHeartbeats([beat(1), beat(2)], T0);
      await store.recordLeaves([id(1)], T0 + 1000);
      assert.equal(await store.countOnline(T0 + 1000), 1);
      assert.equal(await store.countActive(T0 - DAY, T0 + 1000), 2);
      await store.recordHeartbeats([beat(1)], T0 + 2000);
      assert.equal(await store.countOnline(T0 + 2000), 2, 'a heartbeat after a leave is online again');
      await store.recordLeaves([id(99)], T0 + 3000);
      assert.equal(await store.countOnline(T0 + 3000), 2, 'leaving without ever beating changes nothing');
    });

    test('countActive counts distinct identities seen at or after the cutoff, exact to the ms', async () => {
      const store = await make();
      const seen = new Map<number, number>();
      // 300 identities over 40 days, some seen several times; checked against a plain model.
      let state = 7;
      const random = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      let now = T0;
      for (let step = 0; step < 600; step++) {
        now += Math.floor(random() * 2 * HOUR);
        const n = Math.floor(random() * 300);
        await store.recordHeartbeats([beat(n)], now);
        seen.set(n, now);
      }
      const model = (sinceMs: number) => [...seen.values()].filter((ms) => ms >= sinceMs).length;
      for (const ago of [
        0,
        1,
        MINUTE - 1,
        MINUTE,
        HOUR,
        7 * DAY,
        7 * DAY + 1,
        13 * DAY + 17 * MINUTE + 3,
        30 * DAY,
        60 * DAY,
      ]) {
        assert.equal(await store.countActive(now - ago, now), model(now - ago), `${ago} ms back`);
      }
      for (const ms of [...seen.values()].slice(0, 50)) {
        assert.equal(await store.countActive(ms, now), model(ms), 'cutoff exactly on a heartbeat');
        assert.equal(await store.countActive(ms + 1, now), model(ms + 1), 'cutoff one ms after a heartbeat');
      }
    });

    test('concurrent heartbeats are all recorded', async () => {
      const store = await make();
      await Promise.all(Array.from({ length: 500 }, (_, n) => store.recordHeartbeats([beat(n % 250)], T0 + n)));
      assert.equal(await store.countOnline(T0 + 500), 250);
      assert.equal(await store.countActive(T0, T0 + 500), 250);
    });

    test('channels count their own online identities and rank by size', async () => {
      const store = await make();
      await store.recordHeartbeats([beat(1, 'home'), beat(2, 'home'), beat(3, 'shop'), beat(4)], T0);
      await store.recordHeartbeats([beat(1, 'shop')], T0 + 1000);
      assert.equal(await store.countOnline(T0 + 1000, 'home'), 2);
      assert.equal(await store.countOnline(T0 + 1000, 'shop'), 2);
      assert.equal(await store.countOnline(T0 + 1000, 'nowhere'), 0);
      assert.equal(await store.countOnline(T0 + 1000), 4);
      await store.recordHeartbeats([beat(5, 'shop')], T0 + 2000);
      assert.deepEqual(await store.topChannels(T0 + 2000, 10), [
        { channel: 'shop', online: 3 },
        { channel: 'home', online: 2 },
      ]);
      await store.recordLeaves([id(1)], T0 + 3000);
      assert.deepEqual(await store.topChannels(T0 + 3000, 1), [{ channel: 'shop', online: 2 }]);
      assert.equal(await store.countOnline(T0 + 10 * MINUTE + 1500, 'home'), 0, 'channel presence expires too');
      assert.equal(await store.countOnline(T0 + 10 * MINUTE + 1500, 'shop'), 1);
    });

    test('no more than maxChannels channels are tracked at once', async () => {
      const store = await make({ maxChannels: 2 });
      assert.deepEqual(await store.recordHeartbeats([beat(1, 'a'), beat(2, 'b')], T0), { channelsRefused: 0 });
      assert.deepEqual(await store.recordHeartbeats([beat(3, 'c')], T0 + 1), { channelsRefused: 1 });
      assert.equal(await store.countOnline(T0 + 1), 3, 'the refused heartbeat still counts as online');
      assert.equal(await store.countOnline(T0 + 1, 'c'), 0);
      assert.deepEqual(
        await store.recordHeartbeats([beat(4, 'a')], T0 + 2),
        { channelsRefused: 0 },
        'known channels take more',
      );
      // Once a channel empties, a new one fits.
      assert.deepEqual(await store.recordHeartbeats([beat(5, 'c')], T0 + 10 * MINUTE + 1), { channelsRefused: 0 });
    });

    test('daily actives and new identities are exact per day of the time zone', async () => {
      const calendar = createCalendar('America/New_York');
      const store = await make({ calendar });
      const day1 = Date.UTC(2026, 2, 10, 5, 0); // 01:00 in New York
      await store.recordHeartbeats([beat(1), beat(2)], day1);
      await store.recordHeartbeats([beat(1)], day1 + HOUR);
      await store.recordHeartbeats([beat(3)], day1 + 20 * HOUR); // 21:00 the same local day
      await store.recordHeartbeats([beat(1), beat(4)], day1 + 24 * HOUR); // next local day
      assert.deepEqual(await store.dailyActivity(['2026-03-09', '2026-03-10', '2026-03-11']), [
        { day: '2026-03-09', active: 0, new: 0 },
        { day: '2026-03-10', active: 3, new: 3 },
        { day: '2026-03-11', active: 2, new: 1 },
      ]);
    });

    test('distinct actives over several days are estimated within 3%', async () => {
      const store = await make();
      // 4000 identities on day 1, 3000 of them and 2000 more on day 2: 6000 distinct.
      const first = Array.from({ length: 4000 }, (_, n) => beat(n));
      const second = Array.from({ length: 5000 }, (_, n) => beat(n + 1000));
      await store.recordHeartbeats(first, T0);
      await store.recordHeartbeats(second, T0 + DAY);
      const estimate = await store.distinctActive('2026-03-10', '2026-03-11');
      assert.ok(Math.abs(estimate - 6000) / 6000 < 0.03, `estimated ${estimate}, expected about 6000`);
      const one = await store.distinctActive('2026-03-10', '2026-03-10');
      assert.ok(Math.abs(one - 4000) / 4000 < 0.03, `estimated ${one}, expected about 4000`);
      assert.equal(await store.distinctActive('2020-01-01', '2020-01-01'), 0);
    });

    test('check() passes on an open store and fails once closed', async () => {
      const store = await factory.create(options(), T0);
      await store.check();
      await store.close();
      await assert.rejects(store.check());
      await assert.rejects(store.recordHeartbeats([beat(1)], T0));
    });

    test('counts survive a close and reopen', async () => {
      if (!factory.reopen) return;
      let store = await factory.create(options(), T0 - 3 * DAY);
      await store.recordHeartbeats([beat(4)], T0 - 3 * DAY);
      await store.recordHeartbeats([beat(1, 'home'), beat(2), beat(3)], T0);
      await store.recordLeaves([id(3)], T0 + 1);
      store = await factory.reopen(store, options(), T0 + 2);
      open.push(store);
      assert.equal(await store.countOnline(T0 + 2), 2);
      assert.equal(await store.countOnline(T0 + 2, 'home'), 1);
      assert.equal(await store.countActive(T0 - DAY, T0 + 2), 3);
      assert.equal(await store.countActive(T0 - 4 * DAY, T0 + 2), 4);
      assert.deepEqual(await store.dailyActivity(['2026-03-10']), [{ day: '2026-03-10', active: 3, new: 3 }]);
      assert.equal(await store.distinctActive('2026-03-10', '2026-03-10'), 3);
    });
    const minutes = (store: Store, fromMs: number, toMs: number, channel: string | null = null) =>
      store.concurrency({ channel, interval: 'minute', fromMs, toMs }, toMs);
    const near = (actual: number, expected: number, what: string) =>
      assert.ok(Math.abs(actual - expected) < 1e-3, `${what}: ${actual}, expected ${expected}`);

    test('concurrency: each minute has its exact highest and lowest count and its time-weighted mean', async () => {
      const store = await make({}, T0);
      // 0 for 10 s, 1 for 5 s, 2 for 15 s, 3 for 15 s (the highest, from T0 + 30 s), then 2 after a leave.
      await store.recordHeartbeats([beat(1)], T0 + 10_000);
      await store.recordHeartbeats([beat(2)], T0 + 15_000);
      await store.recordHeartbeats([beat(1), beat(3)], T0 + 30_000);
      await store.recordHeartbeats([beat(2)], T0 + 40_000); // already online: no change
      await store.recordLeaves([id(1)], T0 + 45_000);
      await store.settle(T0 + MINUTE + 5_000);
      const [first, second, ...rest] = await minutes(store, T0, T0 + MINUTE + 5_000);
      assert.equal(rest.length, 0, 'no point after now');
      assert.deepEqual([first?.startMs, first?.max, first?.min], [T0, 3, 0]);
      near(first?.mean ?? NaN, (0 * 10 + 1 * 5 + 2 * 15 + 3 * 15 + 2 * 15) / 60, 'mean of the first minute');
      // The running minute: 2 all along so far.
      assert.deepEqual(second, { startMs: T0 + MINUTE, max: 2, min: 2, mean: 2 });
      assert.deepEqual(await store.peak(null, null, T0 + MINUTE + 5_000), { online: 3, atMs: T0 + 30_000 });
      assert.equal(store.leads(), true, 'the only instance settles its own history');
    });

    test('webhook outbox: bounded, the oldest going first, pending ones counted as dropped; attempts recorded', async () => {
      const store = await make({ outboxMax: 3 }, T0);
      const entry = (n: number) => ({
        id: `evt_${n}.r`,
        eventId: `evt_${n}`,
        type: 'webhook.test',
        receiver: 'http://127.0.0.1:9/hook',
        atMs: T0 + n,
        body: `{"n":${n}}`,
      });
      await store.outbox.add([entry(1), entry(2)], T0);
      // Delivered: done, so it goes before any pending one once the outbox is over its bound.
      await store.outbox.attempted(
        'evt_1.r',
        { delivered: true, status: 204, error: null, nextAttemptMs: null },
        T0 + 1,
      );
      await store.outbox.attempted(
        'evt_2.r',
        { delivered: false, status: 503, error: null, nextAttemptMs: T0 + 5000 },
        T0 + 1,
      );
      await store.outbox.add([entry(3), entry(4), entry(3)], T0 + 2);
      assert.deepEqual(await store.outbox.depth(), { pending: 3, dropped: 0 });
      assert.deepEqual(
        (await store.outbox.list('delivered', 10)).map((d) => d.id),
        [],
        'the delivered one went first',
      );
      await store.outbox.add([entry(5)], T0 + 3);
      assert.deepEqual(await store.outbox.depth(), { pending: 3, dropped: 1 });
      const pending = await store.outbox.list('pending', 10);
      assert.deepEqual(pending.map((d) => d.id).sort(), ['evt_3.r', 'evt_4.r', 'evt_5.r'], 'the oldest pending went');
      // Due: those whose next attempt has come, oldest first; the retried one is gone with the bound. (On Redis only
      // the instance that leads gets any: a settle makes this one lead.)
      await store.settle(T0 + 10);
      assert.deepEqual(
        (await store.outbox.due(T0 + 10, 10)).map((d) => d.id),
        ['evt_3.r', 'evt_4.r', 'evt_5.r'],
      );
      await store.outbox.attempted(
        'evt_3.r',
        { delivered: false, status: null, error: 'ECONNREFUSED', nextAttemptMs: null },
        T0 + 20,
      );
      const [failed] = await store.outbox.list('failed', 10);
      assert.equal(failed?.attempts, 1);
      assert.equal(failed?.lastError, 'ECONNREFUSED');
      assert.equal(failed?.doneMs, T0 + 20);
      assert.equal(failed?.body, '{"n":3}');
    });

    test('concurrency: a timed-out identity lowers the count at its exact instant, with no heartbeat after', async () => {
      const store = await make({ heartbeatTimeoutMs: 90_000 }, T0);
      await store.recordHeartbeats([beat(1), beat(2)], T0);
      await store.recordHeartbeats([beat(2)], T0 + 60_000);
      // 1 goes offline at T0 + 90 s (+1 ms), in the middle of the second minute; 2 at T0 + 150 s.
      const points = await minutes(store, T0, T0 + 4 * MINUTE);
      assert.deepEqual(
        points.map((p) => [p.max, p.min]),
        [
          [2, 2],
          [2, 1],
          [1, 0],
          [0, 0],
        ],
      );
      near(points[1]?.mean ?? NaN, (2 * 30_000.001 + 1 * 29_999.999) / 60_000, 'mean of the minute of the timeout');
      near(points[2]?.mean ?? NaN, (30_000.001 * 1) / 60_000, 'mean of the last minute');
    });

    test('concurrency: hours and days are made of their minutes; channels have their own series', async () => {
      const store = await make({}, T0);
      await store.recordHeartbeats([beat(1, 'home'), beat(2, 'home'), beat(3, 'shop')], T0);
      await store.recordHeartbeats([beat(4, 'home')], T0 + 20 * MINUTE);
      const nowMs = T0 + HOUR + 5 * MINUTE;
      await store.recordHeartbeats([beat(5)], nowMs - 1000);
      await store.settle(nowMs);
      const hours = await store.concurrency({ channel: null, interval: 'hour', fromMs: T0, toMs: nowMs }, nowMs);
      assert.deepEqual(
        hours.map((p) => [p.startMs, p.max, p.min]),
        [
          [T0, 3, 0],
          [T0 + HOUR, 1, 0],
        ],
      );
      // 3 online for the first 10 min (then timed out, heartbeatTimeoutMs is 10 min), 4th from 20 to 30 min.
      near(hours[0]?.mean ?? NaN, (3 * 10 + 1 * 10) / 60, 'mean of the first hour');
      const home = await store.concurrency({ channel: 'home', interval: 'hour', fromMs: T0, toMs: nowMs }, nowMs);
      assert.deepEqual(
        home.map((p) => p.max),
        [2, 0],
      );
      const unknown = await store.concurrency(
        { channel: 'nowhere', interval: 'minute', fromMs: T0, toMs: T0 + 3 * MINUTE },
        nowMs,
      );
      assert.deepEqual(
        unknown.map((p) => [p.max, p.min, p.mean]),
        [
          [0, 0, 0],
          [0, 0, 0],
          [0, 0, 0],
        ],
      );
      const days = await store.concurrency({ channel: null, interval: 'day', fromMs: T0 - DAY, toMs: nowMs }, nowMs);
      assert.deepEqual(
        days.map((p) => [p.startMs, p.max]),
        [
          [Date.UTC(2026, 2, 9), 0],
          [Date.UTC(2026, 2, 10), 3],
        ],
      );
      assert.deepEqual(await store.peak('home', null, nowMs), { online: 2, atMs: T0 });
      assert.deepEqual(await store.peak('shop', T0 + HOUR, nowMs), { online: 0, atMs: null });
    });

    test('peaks: since an instant, and all-time, each with the first instant it was reached', async () => {
      const store = await make({}, T0);
      await store.recordHeartbeats([beat(1), beat(2), beat(3)], T0 + 1000);
      await store.recordHeartbeats([beat(4), beat(5)], T0 + 3 * HOUR);
      await store.recordHeartbeats([beat(6)], T0 + 3 * HOUR + 1000);
      const nowMs = T0 + 3 * HOUR + 2 * MINUTE;
      assert.deepEqual(await store.peak(null, null, nowMs), { online: 3, atMs: T0 + 1000 });
      assert.deepEqual(await store.peak(null, T0 + HOUR, nowMs), { online: 3, atMs: T0 + 3 * HOUR + 1000 });
      assert.deepEqual(await store.peak(null, T0, nowMs), { online: 3, atMs: T0 + 1000 });
      await store.recordHeartbeats([beat(7)], nowMs);
      assert.deepEqual(await store.peak(null, null, nowMs), { online: 4, atMs: nowMs });
    });

    test('presence: each identity asked about, online or not and when it was last seen, in order', async () => {
      const store = await make();
      await store.recordHeartbeats([beat(1, 'home'), beat(2)], T0);
      await store.recordHeartbeats([beat(3)], T0 + 5 * MINUTE);
      const nowMs = T0 + 10 * MINUTE + 1;
      assert.deepEqual(await store.presence([id(3), id(9), id(1), id(3)], null, nowMs), [
        { online: true, lastSeenMs: T0 + 5 * MINUTE },
        { online: false, lastSeenMs: null },
        { online: false, lastSeenMs: T0 },
        { online: true, lastSeenMs: T0 + 5 * MINUTE },
      ]);
      await store.recordHeartbeats([beat(1, 'home'), beat(2, 'shop')], nowMs);
      assert.deepEqual(
        (await store.presence([id(1), id(2), id(3)], 'home', nowMs)).map((p) => p.online),
        [true, false, false],
        'online on the channel asked about only',
      );
      await store.recordLeaves([id(1)], nowMs + 1000);
      assert.deepEqual(await store.presence([id(1)], null, nowMs + 1000), [{ online: false, lastSeenMs: nowMs }]);
      assert.deepEqual(await store.presence([], null, nowMs), []);
    });

    test('presence: an identity that opted out counts everywhere, yet looks never seen until it opts in', async () => {
      const store = await make();
      await store.recordHeartbeats([beat(1)], T0);
      await store.recordHeartbeats([{ ...beat(1, 'home'), presence: false }, beat(2)], T0 + 1000);
      assert.equal(await store.countOnline(T0 + 1000), 2);
      assert.equal(await store.countOnline(T0 + 1000, 'home'), 1);
      assert.equal(await store.countActive(T0 - 1, T0 + 1000), 2);
      assert.deepEqual(await store.presence([id(1), id(2)], 'home', T0 + 1000), [
        { online: false, lastSeenMs: null },
        { online: false, lastSeenMs: T0 + 1000 },
      ]);
      // A heartbeat in between without the flag is seen, and the latest decides.
      await store.recordHeartbeats([{ ...beat(1), presence: false }], T0 + 2000);
      assert.deepEqual(await store.presence([id(1)], null, T0 + 2000), [{ online: false, lastSeenMs: null }]);
      await store.recordHeartbeats([beat(1)], T0 + 3000);
      assert.deepEqual(await store.presence([id(1)], null, T0 + 3000), [{ online: true, lastSeenMs: T0 + 3000 }]);
      await store.recordHeartbeats([{ ...beat(2), presence: false }], T0 + 4000);
      if (!factory.reopen) return;
      const reopened = await factory.reopen(store, options(), T0 + 5000);
      open.push(reopened);
      assert.deepEqual(await reopened.presence([id(1), id(2)], null, T0 + 5000), [
        { online: true, lastSeenMs: T0 + 3000 },
        { online: false, lastSeenMs: null },
      ]);
    });

    test('erasure: the identity is gone from every count and lookup, and comes back as new', async () => {
      const store = await make();
      await store.recordHeartbeats([beat(1, 'home'), beat(2, 'home'), beat(3)], T0);
      await store.recordHeartbeats([{ ...beat(4), presence: false }], T0);
      assert.equal(await store.erase([id(1), id(9), id(4), id(1)], T0 + 1000), 2, 'found: 1 and 4, once each');
      assert.equal(await store.countOnline(T0 + 1000), 2);
      assert.equal(await store.countOnline(T0 + 1000, 'home'), 1);
      assert.equal(await store.countActive(T0 - 1, T0 + 1000), 2);
      assert.deepEqual(await store.presence([id(1), id(4), id(2)], null, T0 + 1000), [
        { online: false, lastSeenMs: null },
        { online: false, lastSeenMs: null },
        { online: true, lastSeenMs: T0 },
      ]);
      assert.equal(await store.erase([id(1), id(4)], T0 + 2000), 0, 'idempotent');
      // Aggregates stay: the day still counts four.
      const [today] = await store.dailyActivity(['2026-03-10']);
      assert.deepEqual([today?.active, today?.new], [4, 4]);
      // Back again: online, and new (first seen after the erasure).
      await store.recordHeartbeats([beat(1)], T0 + 3000);
      assert.deepEqual(await store.presence([id(1)], null, T0 + 3000), [{ online: true, lastSeenMs: T0 + 3000 }]);
      assert.equal(await store.countOnline(T0 + 3000), 3);
      const [after] = await store.dailyActivity(['2026-03-10']);
      assert.equal(after?.new, 5);
      await store.erase([id(2)], T0 + 4000);
      if (!factory.reopen) return;
      const reopened = await factory.reopen(store, options(), T0 + 5000);
      open.push(reopened);
      assert.equal(await reopened.countOnline(T0 + 5000), 2, 'the erasures are durable');
      assert.equal(await reopened.countOnline(T0 + 5000, 'home'), 0);
      assert.equal(await reopened.countActive(T0 - 1, T0 + 5000), 2);
      assert.deepEqual(await reopened.presence([id(2), id(4), id(1)], null, T0 + 5000), [
        { online: false, lastSeenMs: null },
        { online: false, lastSeenMs: null },
        { online: true, lastSeenMs: T0 + 3000 },
      ]);
      assert.equal(await reopened.erase([id(2), id(1)], T0 + 6000), 1);
    });

    test('erasure of an identity online lowers the history at that instant', async () => {
      const store = await make();
      await store.recordHeartbeats([beat(1), beat(2)], T0 + 1000);
      await store.erase([id(1)], T0 + 30_000);
      await store.settle(T0 + 2 * MINUTE);
      const [first] = await minutes(store, T0, T0 + MINUTE);
      assert.deepEqual([first?.max, first?.min], [2, 0]);
      const [second] = await minutes(store, T0 + MINUTE, T0 + 2 * MINUTE);
      assert.deepEqual([second?.max, second?.min], [1, 1]);
    });

    test('retention: an identity not seen for retentionDays is forgotten by lookups and counts', async () => {
      const store = await make({ retentionDays: 2 });
      await store.recordHeartbeats([beat(1), beat(2)], T0);
      await store.recordHeartbeats([beat(2)], T0 + DAY);
      const nowMs = T0 + 2 * DAY + 1;
      assert.deepEqual(await store.presence([id(1), id(2)], null, nowMs), [
        { online: false, lastSeenMs: null },
        { online: false, lastSeenMs: T0 + DAY },
      ]);
      assert.equal(await store.erase([id(1)], nowMs), 0, 'already forgotten');
      await store.recordHeartbeats([beat(1)], nowMs);
      const [day] = await store.dailyActivity(['2026-03-12']);
      assert.equal(day?.new, 1, 'past the retention, an identity that comes back is new');
    });

    test('history survives a close and reopen, and goes on from the count without a dip', async () => {
      if (!factory.reopen) return;
      let store = await factory.create(options(), T0);
      await store.recordHeartbeats([beat(1), beat(2), beat(3)], T0 + 1000);
      await store.recordLeaves([id(3)], T0 + 2 * MINUTE);
      await store.settle(T0 + 3 * MINUTE);
      const before = await minutes(store, T0, T0 + 3 * MINUTE);
      store = await factory.reopen(store, options(), T0 + 3 * MINUTE + 10_000);
      open.push(store);
      assert.deepEqual(await minutes(store, T0, T0 + 3 * MINUTE), before);
      assert.deepEqual(await store.peak(null, null, T0 + 4 * MINUTE), { online: 3, atMs: T0 + 1000 });
      // The minute of the restart: the 2 still online, from the restart on.
      const [restart] = await minutes(store, T0 + 3 * MINUTE, T0 + 3 * MINUTE + 30_000);
      assert.deepEqual([restart?.max, restart?.min, restart?.mean], [2, 2, 2]);
    });
  });
}
