// Three instances on one Redis give the answers one instance gives; one killed under load loses nothing acknowledged.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Pseudonymizer, identityOf } from '../src/identity.js';
import { RedisKeys } from '../src/redis/keys.js';
import { connectRedis, type RedisConnection } from '../src/redis/connection.js';
import { runRefusal, startInstance, type Instance } from './support/instances.js';
import { startRedis, type RedisServer } from './support/redis-server.js';

const SECRET = 'multi-instance-secret-0123456789abcdef012345';
const SHARDS = 16;
const keys = new RedisKeys('os:', SHARDS);
const pseudonyms = new Pseudonymizer(SECRET);

async function json<T>(url: string, init: RequestInit = {}): Promise<{ status: number; body: T }> {
  const response = await fetch(url, init);
  return { status: response.status, body: (await response.json()) as T };
}

const beat = (base: string, clientId: string) =>
  fetch(`${base}/heartbeat`, { method: 'POST', headers: { 'x-client-id': clientId } });

async function figures(base: string): Promise<{ online: number; day: number; month: number }> {
  const online = await json<{ online_clients_count: number }>(`${base}/online_clients`);
  const day = await json<{ recent_users_count: number }>(`${base}/total_users?days=1`);
  const month = await json<{ recent_users_count: number }>(`${base}/total_users?days=30`);
  return {
    online: online.body.online_clients_count,
    day: day.body.recent_users_count,
    month: month.body.recent_users_count,
  };
}

/** Whether Redis holds the client's last heartbeat: read straight from its shard, not through the service. */
async function stored(redis: RedisConnection, clientId: string): Promise<boolean> {
  const identity = pseudonyms.pseudonym(identityOf(clientId, ''));
  const score = await redis.client.call('ZSCORE', [keys.seen(keys.shardOf(identity)), Buffer.from(identity, 'latin1')]);
  return score !== null;
}

describe('several instances on one Redis', () => {
  let redis: RedisServer;
  let direct: RedisConnection;
  let instances: Instance[] = [];

  before(async () => {
    redis = await startRedis();
    direct = await connectRedis(redis.url);
    const args = [
      '--store',
      'redis',
      '--redis-url',
      redis.url,
      '--identity-secret',
      SECRET,
      '--redis-shards',
      String(SHARDS),
    ];
    // Heartbeats keep the default 1/s per client; reads and the per-address cap are off because every
    // test client comes from 127.0.0.1.
    instances = await Promise.all(
      [0, 1, 2].map(() => startInstance([...args, '--read-rate-limit', 'off', '--address-rate-limit', 'off'])),
    );
  });
  after(async () => {
    for (const instance of instances) await instance.kill();
    direct?.client.disconnect();
    await redis?.stop();
  });

  it('every instance reports the same online and N-day counts, equal to the distinct clients', async () => {
    const clients = Array.from({ length: 300 }, (_, n) => `client-${n}`);
    // Each client beats three times, each time on a different instance.
    for (let round = 0; round < 3; round++) {
      const statuses = await Promise.all(
        clients.map((id, n) => beat((instances[(n + round) % 3] as Instance).url, id).then((r) => r.status)),
      );
      assert.deepEqual(new Set(statuses), new Set([200]), `round ${round}`);
      if (round < 2) await new Promise((resolve) => setTimeout(resolve, 1100)); // the next beat is within 1/s
    }
    for (const instance of instances)
      assert.deepEqual(await figures(instance.url), { online: 300, day: 300, month: 300 }, instance.url);
  });

  it('shares the rate limit: a client over its limit on one instance is over it on all', async () => {
    const first = await beat((instances[0] as Instance).url, 'eager-client');
    assert.equal(first.status, 200);
    for (const instance of instances.slice(1)) {
      const again = await beat(instance.url, 'eager-client');
      assert.equal(again.status, 429, `${instance.url} knows the client spent its 1/s`);
      assert.ok(Number(again.headers.get('retry-after')) >= 1);
    }
  });

  it('when one instance is killed under load, the others carry on and nothing acknowledged is lost', async () => {
    const before = (await figures((instances[0] as Instance).url)).online;
    const acknowledged = new Set<string>();
    const attempted = new Set<string>();
    const afterKill: Record<string, number> = {};
    let killed = false;
    let running = true;
    const workers = instances.flatMap((instance, i) =>
      Array.from({ length: 4 }, async (_, loop) => {
        for (let n = 0; running; n++) {
          const id = `load-${i}-${loop}-${n}`;
          attempted.add(id);
          try {
            const response = await beat(instance.url, id);
            await response.arrayBuffer();
            if (response.status === 200) {
              acknowledged.add(id);
              if (killed) afterKill[instance.url] = (afterKill[instance.url] ?? 0) + 1;
            }
          } catch {
            if (instance.child.exitCode !== null || instance.child.signalCode !== null) return; // the killed one
          }
        }
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 400));
    await (instances[2] as Instance).kill();
    killed = true;
    await new Promise((resolve) => setTimeout(resolve, 400));
    running = false;
    await Promise.all(workers);

    const survivors = instances.slice(0, 2);
    for (const instance of survivors)
      assert.ok((afterKill[instance.url] ?? 0) > 0, `${instance.url} kept acknowledging after the kill`);
    const missing: string[] = [];
    for (const id of acknowledged) if (!(await stored(direct, id))) missing.push(id);
    assert.deepEqual(missing, [], 'every acknowledged heartbeat is in Redis');
    // What Redis holds is between what was acknowledged and what was sent (the killed instance may
    // have written some it never answered), and both survivors report exactly that.
    let held = 0;
    for (const id of attempted) if (await stored(direct, id)) held++;
    assert.ok(held >= acknowledged.size && held <= attempted.size);
    for (const instance of survivors) {
      const now = await figures(instance.url);
      assert.deepEqual(now, { online: before + held, day: before + held, month: before + held }, instance.url);
    }
    assert.ok(acknowledged.size > 100, `the load was real: ${acknowledged.size} acknowledged`);
  });

  it('refuses to start in Redis mode without an identity secret, or with another secret or shard count than the data', async () => {
    const base = ['--store', 'redis', '--redis-url', redis.url];
    const noSecret = await runRefusal(base);
    assert.equal(noSecret.code, 2);
    assert.match(noSecret.stderr, /--identity-secret \/ IDENTITY_SECRET: is required with --store redis/);
    const fromEnv = await runRefusal([], { STORE: 'redis', REDIS_URL: redis.url });
    assert.equal(fromEnv.code, 2, 'the same from the environment');
    assert.match(fromEnv.stderr, /IDENTITY_SECRET/);

    const otherSecret = await runRefusal([...base, '--identity-secret', 'another-secret-0123456789abcdef0123456789']);
    assert.equal(otherSecret.code, 2);
    assert.match(otherSecret.stderr, /--identity-secret \/ IDENTITY_SECRET: .*different secret/);
    const otherShards = await runRefusal([...base, '--identity-secret', SECRET, '--redis-shards', '8']);
    assert.equal(otherShards.code, 2);
    assert.match(otherShards.stderr, /--redis-shards \/ REDIS_SHARDS: .*"16"/);
    // Another prefix is another deployment: it starts.
    const other = await startInstance([
      ...base,
      '--identity-secret',
      'another-secret-0123456789abcdef0123456789',
      '--redis-prefix',
      'other:',
    ]);
    await other.kill();
  });
});
