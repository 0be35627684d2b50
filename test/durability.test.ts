// Crash and shutdown: a SIGKILL loses no acknowledged heartbeat; SIGTERM drains, closes the database and exits 0.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Pseudonymizer, identityOf } from '../src/identity.js';
import { DATABASE_FILE } from '../src/store/sqlite.js';
import { SECRET, lockIsFree, startServer, storedIdentities, tempDir, type ServerProcess } from './support/app.js';

const pseudonymizer = new Pseudonymizer(SECRET);
const args = (dataDir: string) => [
  '--data-dir',
  dataDir,
  '--identity-secret',
  SECRET,
  '--rate-limit',
  'off',
  '--read-rate-limit',
  'off',
  '--address-rate-limit',
  'off',
];

/** Sends heartbeats from `loops` concurrent clients until stopped; returns the ids acknowledged with 200. */
function load(url: string, loops: number) {
  const acknowledged = new Set<string>();
  const statuses = new Map<number, number>();
  let failures = 0;
  let running = true;
  const workers = Array.from({ length: loops }, async (_, loop) => {
    for (let n = 0; running; n++) {
      const id = `client-${loop}-${n}`;
      try {
        const res = await fetch(`${url}/heartbeat`, { method: 'POST', headers: { 'x-client-id': id } });
        await res.arrayBuffer();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status === 200) acknowledged.add(id);
      } catch {
        failures++;
        if (!running) return;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
  });
  return {
    acknowledged,
    statuses,
    failures: () => failures,
    async stop() {
      running = false;
      await Promise.all(workers);
    },
  };
}

describe('durability', () => {
  const dirs: { remove(): void }[] = [];
  const servers: ServerProcess[] = [];
  after(() => {
    for (const server of servers) server.child.kill('SIGKILL');
    for (const dir of dirs) dir.remove();
  });

  it('SIGKILL under load loses no acknowledged heartbeat', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const first = await startServer(args(dir.path));
    servers.push(first);
    const traffic = load(first.url, 32);
    await new Promise((resolve) => setTimeout(resolve, 800 + Math.random() * 700));
    first.child.kill('SIGKILL');
    await first.exited;
    await traffic.stop();
    const acknowledged = traffic.acknowledged;
    assert.ok(acknowledged.size > 100, `enough load to mean something (${acknowledged.size} acknowledged)`);

    const second = await startServer(args(dir.path));
    servers.push(second);
    const online = (await (await fetch(`${second.url}/online_clients`)).json()) as { online_clients_count: number };
    const total = (await (await fetch(`${second.url}/total_users?days=1`)).json()) as { recent_users_count: number };
    assert.ok(
      online.online_clients_count >= acknowledged.size,
      `online ${online.online_clients_count} >= acknowledged ${acknowledged.size}`,
    );
    assert.ok(total.recent_users_count >= acknowledged.size);
    const stored = storedIdentities(dir.path);
    const missing = [...acknowledged].filter((id) => !stored.has(pseudonymizer.pseudonym(identityOf(id, ''))));
    assert.deepEqual(missing, [], 'every acknowledged heartbeat is in the database');
    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0);
  });

  it('SIGTERM stops accepting, answers what is in flight, closes the database and exits 0', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const server = await startServer(args(dir.path));
    servers.push(server);
    const traffic = load(server.url, 32);
    await new Promise((resolve) => setTimeout(resolve, 700));
    const failuresBefore = traffic.failures();
    server.child.kill('SIGTERM');
    const code = await server.exited;
    await traffic.stop();
    assert.equal(code, 0, server.stderr());
    assert.equal(failuresBefore, 0, 'no request failed before the signal');
    for (const status of traffic.statuses.keys()) assert.ok(status === 200 || status === 503, `status ${status}`);
    const stored = storedIdentities(dir.path);
    const missing = [...traffic.acknowledged].filter((id) => !stored.has(pseudonymizer.pseudonym(identityOf(id, ''))));
    assert.deepEqual(missing, []);
    assert.ok(lockIsFree(dir.path), 'the data directory lock is released');
    const wal = join(dir.path, `${DATABASE_FILE}-wal`);
    assert.ok(!existsSync(wal) || statSync(wal).size === 0, 'the WAL was checkpointed into the database');
  });

  it('a second SIGTERM during the drain closes a half-sent request at once, releases the lock and exits 0', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const timeouts = ['--shutdown-timeout', '60s', '--request-timeout', '60s'];
    const server = await startServer([...args(dir.path), ...timeouts]);
    servers.push(server);
    let stdout = '';
    server.child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const { port } = new URL(server.url);
    const halfSent = connect({ port: Number(port), host: '127.0.0.1' });
    halfSent.on('error', () => {});
    await once(halfSent, 'connect');
    halfSent.write('POST /heartbeat HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\n');
    // Gives the server turns to read those bytes; the check that the first signal waits tells if it did not.
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);

    server.child.kill('SIGTERM');
    for (let tries = 0; !/shutting down/.test(stdout) && tries < 100; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.match(stdout, /shutting down/);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(server.child.exitCode, null, 'the first signal waits for the half-sent request');
    const secondAt = performance.now();
    server.child.kill('SIGTERM');
    const code = await server.exited;
    const drainMs = performance.now() - secondAt;
    halfSent.destroy();
    assert.equal(code, 0, server.stderr());
    assert.ok(drainMs < 5000, `exited ${Math.round(drainMs)} ms after the second signal, not after the 60 s timeout`);
    assert.ok(lockIsFree(dir.path), 'the data directory lock is released');
    const wal = join(dir.path, `${DATABASE_FILE}-wal`);
    assert.ok(!existsSync(wal) || statSync(wal).size === 0, 'the database was checkpointed and closed');

    const next = await startServer(args(dir.path));
    servers.push(next);
    next.child.kill('SIGTERM');
    assert.equal(await next.exited, 0, 'a new instance starts on the same data directory');
  });

  it('SIGTERM as soon as the service listens drains and exits 0, instead of killing it with 143', async () => {
    const dir = tempDir();
    dirs.push(dir);
    for (let round = 0; round < 3; round++) {
      const server = await startServer(args(dir.path));
      servers.push(server);
      server.child.kill('SIGTERM');
      assert.equal(await server.exited, 0, `round ${round}: ${server.stderr()}`);
    }
  });

  it('a second service on the same data directory is refused', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const server = await startServer(args(dir.path));
    servers.push(server);
    await assert.rejects(startServer(args(dir.path)), /in use by another online-stats process/);
    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0);
  });
});
