// Redis down and back: a real redis-server is killed under running instances, which answer 503 fast, stay up, and
// recover alone.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startInstance, type Instance } from './support/instances.js';
import { startRedis, type RedisServer } from './support/redis-server.js';

const SECRET = 'failure-test-secret-0123456789abcdef0123456789';
/** The policy's bound: a request answers within 1 s even with Redis gone. */
const BOUND_MS = 1000;

interface Answer {
  status: number;
  retryAfter: string | null;
  code: string | undefined;
  elapsedMs: number;
}

async function request(url: string, init: RequestInit = {}): Promise<Answer> {
  const startedMs = performance.now();
  const response = await fetch(url, init);
  const body = (await response.json()) as { code?: string };
  return {
    status: response.status,
    retryAfter: response.headers.get('retry-after'),
    code: body.code,
    elapsedMs: performance.now() - startedMs,
  };
}

const beat = (base: string, clientId: string) =>
  request(`${base}/heartbeat`, { method: 'POST', headers: { 'x-client-id': clientId } });
const online = async (base: string) =>
  ((await (await fetch(`${base}/online_clients`)).json()) as { online_clients_count: number }).online_clients_count;

async function eventually<T>(what: string, attempt: () => Promise<T | null>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await attempt().catch(() => null);
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('Redis failure policy', () => {
  let redis: RedisServer;
  let unlimited: Instance;
  let limited: Instance;

  before(async () => {
    // Every write fsynced, so what was acknowledged before the kill is there after the restart.
    redis = await startRedis({ args: ['--appendonly', 'yes', '--appendfsync', 'always'] });
    const common = [
      '--store',
      'redis',
      '--redis-url',
      redis.url,
      '--identity-secret',
      SECRET,
      '--address-rate-limit',
      'off',
    ];
    // One instance without limits (the store's own failure path), one with the shared limiter (its path).
    [unlimited, limited] = await Promise.all([
      startInstance([...common, '--rate-limit', 'off', '--read-rate-limit', 'off']),
      startInstance([...common, '--rate-limit', '1/s', '--read-rate-limit', '100/s']),
    ]);
  });
  after(async () => {
    await unlimited?.kill();
    await limited?.kill();
    await redis?.stop();
  });

  it('answers 503 with Retry-After within 1 s while Redis is down, stays alive, queues nothing, and recovers on its own', async () => {
    for (let n = 0; n < 5; n++) assert.equal((await beat(unlimited.url, `before-${n}`)).status, 200);
    assert.equal(await online(unlimited.url), 5);

    await redis.kill();

    for (const instance of [unlimited, limited]) {
      const answers = [
        await beat(instance.url, 'during-a'),
        await request(`${instance.url}/online_clients`),
        await request(`${instance.url}/total_users?days=7`),
        await request(`${instance.url}/leave`, { method: 'POST', headers: { 'x-client-id': 'before-1' } }),
      ];
      for (const answer of answers) {
        assert.equal(answer.status, 503);
        assert.equal(answer.retryAfter, '1');
        assert.equal(answer.code, 'OS_STORE_UNAVAILABLE');
        assert.ok(answer.elapsedMs < BOUND_MS, `answered in ${Math.round(answer.elapsedMs)} ms`);
      }
      const ready = await request(`${instance.url}/readyz`);
      assert.equal(ready.status, 503, '/readyz fails');
      assert.ok(ready.elapsedMs < BOUND_MS);
      assert.equal((await fetch(`${instance.url}/healthz`)).status, 200, 'the process is alive and answers');
    }

    // A flood while down: every request answered, none left hanging in a queue.
    const flood = await Promise.all(Array.from({ length: 300 }, (_, n) => beat(unlimited.url, `during-${n}`)));
    assert.deepEqual(new Set(flood.map((answer) => answer.status)), new Set([503]));
    assert.ok(
      Math.max(...flood.map((answer) => answer.elapsedMs)) < 2 * BOUND_MS,
      'the flood drains within the bound (plus queueing in this test client)',
    );
    // One line per reason per 10 s, not one per refused request (there were 16,000 to 20,000 in 10 s).
    const refusalLines = unlimited.stdout().match(/request refused/g)?.length ?? 0;
    assert.ok(refusalLines > 0 && refusalLines <= 5, `${refusalLines} log lines for 305 refused requests`);
    assert.equal(unlimited.child.exitCode, null);
    assert.equal(limited.child.exitCode, null);

    await redis.restart();
    await eventually('/readyz back to 200 on both instances', async () => {
      for (const instance of [unlimited, limited])
        if ((await fetch(`${instance.url}/readyz`)).status !== 200) return null;
      return true;
    });
    // The acknowledged heartbeats survived; the refused ones were not queued and replayed.
    assert.equal(await online(unlimited.url), 5);
    assert.equal((await beat(unlimited.url, 'after-1')).status, 200);
    assert.equal((await beat(limited.url, 'after-2')).status, 200);
    assert.equal(await online(unlimited.url), 7);
    assert.match(unlimited.stderr(), /unavailable/);
    assert.match(unlimited.stderr(), /is back/);
  });

  it('answers 503 within 1 s when Redis hangs with the connection open (unreachable), and recovers when it answers again', async () => {
    assert.equal((await beat(unlimited.url, 'stall-before')).status, 200);
    redis.pause();
    try {
      for (const instance of [unlimited, limited]) {
        for (const answer of [
          await beat(instance.url, 'stall-a'),
          await request(`${instance.url}/online_clients`),
          await request(`${instance.url}/readyz`),
        ]) {
          assert.equal(answer.status, 503);
          assert.equal(answer.retryAfter, '1');
          assert.ok(answer.elapsedMs < BOUND_MS, `answered in ${Math.round(answer.elapsedMs)} ms`);
        }
      }
      const flood = await Promise.all(Array.from({ length: 300 }, (_, n) => beat(unlimited.url, `stall-${n}`)));
      assert.deepEqual(new Set(flood.map((answer) => answer.status)), new Set([503]));
      assert.ok(Math.max(...flood.map((answer) => answer.elapsedMs)) < 2 * BOUND_MS);
      assert.equal((await fetch(`${unlimited.url}/healthz`)).status, 200);
    } finally {
      redis.resume();
    }
    await eventually('/readyz back to 200 on both instances', async () => {
      for (const instance of [unlimited, limited])
        if ((await fetch(`${instance.url}/readyz`)).status !== 200) return null;
      return true;
    });
    assert.equal((await beat(unlimited.url, 'stall-after')).status, 200);
    assert.equal((await beat(limited.url, 'stall-after-2')).status, 200);
  });
});
