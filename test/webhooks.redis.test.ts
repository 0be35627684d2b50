// Webhooks from three real instances sharing one Redis: each event reaches the receiver once (by webhook-id), the
// outbox is shared, and when the instance that evaluates the rules is killed another takes over and delivers.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startInstance, type Instance } from './support/instances.js';
import { startRedis, type RedisServer } from './support/redis-server.js';
import { WEBHOOK_SECRET, ofType, startReceiver, type Receiver } from './support/webhook-receiver.js';

const SECRET = 'webhooks-redis-secret-0123456789abcdef0123';
const TOKEN = 'webhooks-redis-token-0123456789';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function beats(instances: readonly Instance[], ids: readonly string[]): Promise<void> {
  const statuses = await Promise.all(
    ids.map(async (id, n) => {
      const target = instances[n % instances.length] as Instance;
      const response = await fetch(`${target.url}/heartbeat`, { method: 'POST', headers: { 'x-client-id': id } });
      return response.status;
    }),
  );
  assert.deepEqual(new Set(statuses), new Set([200]));
}

async function leader(instances: readonly Instance[]): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const flags = await Promise.all(
      instances.map(async (instance) =>
        /^online_stats_leader 1$/m.test(
          await (await fetch(`${instance.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text(),
        ),
      ),
    );
    if (flags.filter(Boolean).length === 1) return flags.indexOf(true);
    if (Date.now() > deadline) assert.fail(`no single leader: ${flags.join(', ')}`);
    await sleep(200);
  }
}

/** How many times each webhook-id was accepted. */
function counts(receiver: Receiver): Map<string, number> {
  const seen = new Map<string, number>();
  for (const request of receiver.accepted()) seen.set(request.id, (seen.get(request.id) ?? 0) + 1);
  return seen;
}

describe('webhooks from three instances sharing one Redis', () => {
  let redis: RedisServer;
  let hook: Receiver;
  let instances: Instance[] = [];

  before(async () => {
    redis = await startRedis();
    hook = await startReceiver();
    const args = [
      '--store',
      'redis',
      '--redis-url',
      redis.url,
      '--identity-secret',
      SECRET,
      '--read-rate-limit',
      'off',
      '--address-rate-limit',
      'off',
      '--api-token',
      TOKEN,
      '--heartbeat-timeout',
      '3s',
      '--alert',
      'online >= 6',
      '--webhook-url',
      hook.url,
      '--webhook-secret',
      WEBHOOK_SECRET,
    ];
    instances = await Promise.all([0, 1, 2].map(() => startInstance(args)));
  });
  after(async () => {
    for (const instance of instances) await instance.kill();
    await hook?.close();
    await redis?.stop();
  });

  it('delivers each event once, and after the leader is killed another instance evaluates and delivers', async () => {
    await beats(instances, ['a', 'b', 'c', 'd', 'e', 'f']);
    await hook.until((got) => ofType(got, 'alert.firing').length >= 1, 8000, 'alert.firing');
    // A test event asked of each instance: three events, each delivered by the one instance that delivers.
    for (const instance of instances) {
      const response = await fetch(`${instance.url}/webhooks/test`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(response.status, 202);
    }
    await hook.until((got) => ofType(got, 'webhook.test').length >= 3, 8000, 'three test events');
    await sleep(2000); // time enough for a duplicate to show up
    assert.equal(ofType(hook.accepted(), 'alert.firing').length, 1, 'the rule fired once, not once per instance');
    for (const [id, times] of counts(hook)) assert.equal(times, 1, `${id} delivered once`);
    assert.ok(hook.requests.every((request) => request.verified));

    // The leader goes; the six time out 3 s after their heartbeats, and the rule resolves on another instance.
    const killed = await leader(instances);
    await (instances[killed] as Instance).kill();
    const survivors = instances.filter((_, n) => n !== killed);
    const [resolved] = ofType(
      await hook.until((got) => ofType(got, 'alert.resolved').length >= 1, 20_000, 'alert.resolved after the kill'),
      'alert.resolved',
    );
    assert.equal((resolved?.body.data as { rule: string }).rule, 'online >= 6');
    assert.equal(await leader(survivors).then((n) => n >= 0), true);
    await sleep(2000);
    assert.equal(ofType(hook.accepted(), 'alert.resolved').length, 1, 'resolved once');
    assert.ok(hook.requests.every((request) => request.verified));
    // Every instance lists the same deliveries: the outbox is in Redis.
    const listed = await Promise.all(
      survivors.map(async (instance) => {
        const response = await fetch(`${instance.url}/webhooks/deliveries?status=delivered`, {
          headers: { authorization: `Bearer ${TOKEN}` },
        });
        const { deliveries } = (await response.json()) as { deliveries: { event_id: string }[] };
        return new Set(deliveries.map((d) => d.event_id));
      }),
    );
    assert.deepEqual(listed[0], listed[1]);
    assert.deepEqual(listed[0], new Set(counts(hook).keys()));
  });
});
