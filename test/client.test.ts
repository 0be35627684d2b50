// The client SDK in Node against the real service on a real port: ids, channels, jitter, backoff, Retry-After, leave.
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  createHeartbeat,
  parseRetryAfterMs,
  type FetchLike,
  type HeartbeatResult,
  type Timers,
} from '../client/index.js';
import { liveService, type LiveService } from './support/browser.js';

/** Timers the test fires by hand: it sees every wait the SDK asks for and decides when time has passed. */
class HandTimers implements Timers {
  private next = 1;
  readonly pending = new Map<number, { callback: () => void; ms: number }>();
  setTimeout(callback: () => void, ms: number): number {
    const id = this.next++;
    this.pending.set(id, { callback, ms });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }
  /** The one wait scheduled now, in ms. */
  waiting(): number {
    assert.equal(this.pending.size, 1, 'exactly one heartbeat should be scheduled');
    return [...this.pending.values()][0]!.ms;
  }
  fire(): void {
    const [id, timer] = [...this.pending.entries()][0]!;
    this.pending.delete(id);
    timer.callback();
  }
}

/** Results in order, awaited one at a time. */
function resultQueue() {
  const results: HeartbeatResult[] = [];
  const waiters: ((result: HeartbeatResult) => void)[] = [];
  return {
    onResult(result: HeartbeatResult) {
      const waiter = waiters.shift();
      if (waiter) waiter(result);
      else results.push(result);
    },
    next(): Promise<HeartbeatResult> {
      const ready = results.shift();
      if (ready) return Promise.resolve(ready);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no heartbeat result within 5 s')), 5000);
        waiters.push((result) => {
          clearTimeout(timer);
          resolve(result);
        });
      });
    },
  };
}

describe('client SDK in Node, against the service', () => {
  let service: LiveService;
  const online = async (channel?: string): Promise<number> => {
    const query = channel === undefined ? '' : `?channel=${encodeURIComponent(channel)}`;
    const response = await fetch(`${service.url}/online_clients${query}`);
    assert.equal(response.status, 200);
    return ((await response.json()) as { online_clients_count: number }).online_clients_count;
  };

  before(async () => {
    service = await liveService({ ingestRateLimit: null, readRateLimit: null });
  });
  after(() => service.close());

  it('start() sends a heartbeat at once under the client id and channel; the service counts the client once; leave() takes it offline', async () => {
    const results = resultQueue();
    const first = createHeartbeat({
      url: service.url,
      clientId: 'node-a',
      channel: 'lobby',
      intervalMs: 60_000,
      onResult: results.onResult,
    });
    const again = createHeartbeat({
      url: service.url,
      clientId: 'node-a',
      channel: 'lobby',
      intervalMs: 60_000,
      onResult: results.onResult,
    });
    try {
      first.start();
      assert.equal((await results.next()).kind, 'ok');
      again.start();
      assert.equal((await results.next()).kind, 'ok');
      assert.equal(await online('lobby'), 1, 'the same client id is one client');
      assert.equal(first.running, true);

      await first.leave();
      again.stop();
      assert.equal(first.running, false);
      assert.equal(await online('lobby'), 0, 'leave takes the client offline at once');
      assert.equal(await online(), 0);
    } finally {
      first.stop();
      again.stop();
    }
  });

  it('without a clientId each instance makes its own, unless storage keeps one', async () => {
    const a = createHeartbeat({ url: service.url });
    const b = createHeartbeat({ url: service.url });
    assert.notEqual(a.clientId, b.clientId);
    assert.match(a.clientId, /^[\x21-\x7e]{1,128}$/);
    const kept = new Map<string, string>();
    const storage = {
      getItem: (key: string) => kept.get(key) ?? null,
      setItem: (key: string, value: string) => void kept.set(key, value),
    };
    const c = createHeartbeat({ url: service.url, storage });
    const d = createHeartbeat({ url: service.url, storage });
    assert.equal(c.clientId, d.clientId);
    assert.equal(kept.get('online-stats-client-id'), c.clientId);
  });

  it('waits intervalMs × (1 ± jitter) between heartbeats, drawn anew every time', async () => {
    const timers = new HandTimers();
    const results = resultQueue();
    const draws = [0, 0.999, 0.5, 0.25];
    let calls = 0;
    const heartbeat = createHeartbeat({
      url: service.url,
      clientId: 'node-jitter',
      intervalMs: 10_000,
      jitter: 0.2,
      timers,
      random: () => draws[calls++ % draws.length]!,
      onResult: results.onResult,
    });
    heartbeat.start();
    const waits: number[] = [];
    for (let beat = 0; beat < draws.length; beat++) {
      const result = await results.next();
      assert.equal(result.kind, 'ok');
      waits.push(timers.waiting());
      assert.equal(result.nextInMs, timers.waiting());
      if (beat < draws.length - 1) timers.fire();
    }
    heartbeat.stop();
    assert.deepEqual(waits, [8000, 11_996, 10_000, 9000]);
    assert.equal(timers.pending.size, 0, 'stop() cancels the next heartbeat');
  });

  it('on 429 waits exactly the Retry-After the service sent, then goes back to the interval', async () => {
    const limited = await liveService({ ingestRateLimit: { count: 1, periodMs: 7000, burst: 1 }, readRateLimit: null });
    const timers = new HandTimers();
    const results = resultQueue();
    const retryAfter: (string | null)[] = [];
    const spy: FetchLike = async (url, init) => {
      const response = await fetch(url, init);
      retryAfter.push(response.headers.get('retry-after'));
      return response;
    };
    const heartbeat = createHeartbeat({
      url: limited.url,
      clientId: 'node-429',
      intervalMs: 1000,
      jitter: 0,
      timers,
      fetch: spy,
      onResult: results.onResult,
    });
    try {
      heartbeat.start();
      assert.deepEqual(await results.next(), { kind: 'ok', status: 200, nextInMs: 1000 });
      timers.fire();
      const limitedResult = await results.next();
      assert.equal(limitedResult.kind, 'rate-limited');
      assert.equal(retryAfter[1], '7', 'the service asks for the rest of its 7 s period');
      assert.equal(limitedResult.nextInMs, 7000);
      assert.equal(timers.waiting(), 7000);
    } finally {
      heartbeat.stop();
      await limited.close();
    }
  });

  it('backs off exponentially on network errors and error statuses, up to maxBackoffMs, and resets after a success', async () => {
    const timers = new HandTimers();
    const results = resultQueue();
    let failuresLeft = 3;
    const flaky: FetchLike = async (url, init) => {
      if (failuresLeft-- > 0) throw new TypeError('fetch failed');
      return fetch(url, init);
    };
    const heartbeat = createHeartbeat({
      url: service.url,
      clientId: 'node-flaky',
      intervalMs: 1000,
      jitter: 0,
      maxBackoffMs: 5000,
      timers,
      fetch: flaky,
      onResult: results.onResult,
    });
    heartbeat.start();
    const seen: [string, number | null, number][] = [];
    for (let n = 0; n < 4; n++) {
      const result = await results.next();
      seen.push([result.kind, result.kind === 'error' ? result.failures : null, result.nextInMs]);
      timers.fire();
    }
    heartbeat.stop();
    assert.deepEqual(seen, [
      ['error', 1, 2000],
      ['error', 2, 4000],
      ['error', 3, 5000],
      ['ok', null, 1000],
    ]);

    // A status the service refuses (a channel longer than it allows) is an error too, with its status.
    const refused = resultQueue();
    const tooLong = createHeartbeat({
      url: service.url,
      clientId: 'node-400',
      channel: 'x'.repeat(200),
      intervalMs: 1000,
      jitter: 0,
      timers: new HandTimers(),
      onResult: refused.onResult,
    });
    tooLong.start();
    const result = await refused.next();
    tooLong.stop();
    assert.equal(result.kind, 'error');
    assert.equal(result.kind === 'error' && result.status, 400);
    assert.equal(result.nextInMs, 2000);
  });

  it('a service that never answers counts as an error after requestTimeoutMs', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => void sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const results = resultQueue();
    const { port } = silent.address() as AddressInfo;
    const heartbeat = createHeartbeat({
      url: `http://127.0.0.1:${port}`,
      intervalMs: 1000,
      jitter: 0,
      requestTimeoutMs: 200,
      timers: new HandTimers(),
      onResult: results.onResult,
    });
    try {
      heartbeat.start();
      const result = await results.next();
      assert.equal(result.kind, 'error');
      assert.equal(result.kind === 'error' && result.status, null);
    } finally {
      heartbeat.stop();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('keeps the path of the base URL (a service mounted under a prefix)', async () => {
    const urls: string[] = [];
    const recorder: FetchLike = async (url) => {
      urls.push(url);
      return { ok: true, status: 200, headers: { get: () => null } };
    };
    const heartbeat = createHeartbeat({
      url: 'https://stats.example/online',
      clientId: 'x',
      fetch: recorder,
      timers: new HandTimers(),
    });
    heartbeat.start();
    await heartbeat.leave();
    assert.deepEqual(urls, ['https://stats.example/online/heartbeat', 'https://stats.example/online/leave']);
  });

  it('a Retry-After of 0 waits a second instead of retrying in a tight loop', async () => {
    const results = resultQueue();
    const timers = new HandTimers();
    const zero: FetchLike = async () => ({
      ok: false,
      status: 429,
      headers: { get: (name) => (name === 'retry-after' ? '0' : null) },
    });
    const heartbeat = createHeartbeat({
      url: service.url,
      clientId: 'x',
      fetch: zero,
      timers,
      onResult: results.onResult,
    });
    heartbeat.start();
    const result = await results.next();
    heartbeat.stop();
    assert.equal(result.kind, 'rate-limited');
    assert.equal(result.kind === 'rate-limited' && result.retryAfterMs, 0);
    assert.equal(result.nextInMs, 1000);
  });

  it('refuses options that cannot work', () => {
    assert.throws(() => createHeartbeat({ url: service.url, intervalMs: 0 }), RangeError);
    assert.throws(() => createHeartbeat({ url: service.url, jitter: 1.5 }), RangeError);
    assert.throws(() => createHeartbeat({ url: 'not a url' }), TypeError);
  });
});

describe('parseRetryAfterMs', () => {
  it('reads delta-seconds and HTTP dates, and nothing else', () => {
    const now = Date.UTC(2026, 0, 1, 12, 0, 0);
    assert.equal(parseRetryAfterMs('3', now), 3000);
    assert.equal(parseRetryAfterMs(' 0 ', now), 0);
    assert.equal(parseRetryAfterMs('Thu, 01 Jan 2026 12:00:05 GMT', now), 5000);
    assert.equal(parseRetryAfterMs('Thu, 01 Jan 2026 11:00:00 GMT', now), 0);
    assert.equal(parseRetryAfterMs('soon', now), null);
    assert.equal(parseRetryAfterMs(null, now), null);
  });
});
