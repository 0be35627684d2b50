// `online-stats import`: the demo's users_data.json moves over whole, idempotently, or not at all.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildApp } from '../src/app.js';
import { ManualClock } from '../src/clock.js';
import { defaultConfig } from '../src/config.js';
import { storeOptions } from '../src/open-store.js';
import { DATABASE_FILE, SqliteStore } from '../src/store/sqlite.js';
import { parseDemoTime } from '../src/import.js';
import { SECRET, runCli, tempDir } from './support/app.js';

const NOW = Date.now();
const iso = (ms: number) =>
  new Date(ms)
    .toISOString()
    .replace('Z', '')
    .replace(/\.(\d{3})$/, '.$1456'); // utcnow().isoformat()
const DAY = 86_400_000;

/** Opens the imported data as the service would, at the real time, and asks the API. */
async function ask(
  dataDir: string,
  fn: (inject: (url: string, address?: string) => Promise<Record<string, number>>) => Promise<void>,
) {
  const clock = new ManualClock(NOW + 1000);
  const config = defaultConfig({ dataDir, logLevel: 'silent', ingestRateLimit: null, readRateLimit: null });
  const store = SqliteStore.open(join(dataDir, DATABASE_FILE), storeOptions(config), clock.nowMs());
  const app = await buildApp({ config, store, clock, identitySecret: SECRET, logger: false });
  try {
    await fn(async (url, address) => {
      const res = await app.inject({
        method: url === '/heartbeat' ? 'POST' : 'GET',
        url,
        remoteAddress: address ?? '127.0.0.1',
      });
      assert.equal(res.statusCode, 200, res.body);
      return res.json();
    });
  } finally {
    await app.close();
    await store.close();
  }
}

describe('import of the demo data file', () => {
  const dir = tempDir();
  const env = { IDENTITY_SECRET: SECRET };
  const file = join(dir.path, 'users_data.json');
  const dataDir = join(dir.path, 'data');
  before(() => {
    writeFileSync(
      file,
      JSON.stringify({
        '203.0.113.1': iso(NOW - 2 * 60_000), // online now
        '203.0.113.2': iso(NOW - 3 * DAY),
        '2001:db8::1': iso(NOW - 20 * DAY),
        '::ffff:198.51.100.9': iso(NOW - 60 * DAY),
      }),
    );
  });
  after(() => dir.remove());

  it('reads the times the demo wrote (naive UTC, microseconds)', () => {
    assert.equal(parseDemoTime('2026-11-25T04:05:06.123456'), Date.UTC(2026, 10, 25, 4, 5, 6, 123));
    assert.equal(parseDemoTime('2026-11-25T04:05:06'), Date.UTC(2026, 10, 25, 4, 5, 6));
    assert.equal(parseDemoTime('2026-11-25T04:05:06+01:00'), Date.UTC(2026, 10, 25, 3, 5, 6));
    assert.equal(parseDemoTime('yesterday'), null);
  });

  it('imports every user, who then count in total_users and online_clients', async () => {
    const result = await runCli(['import', file, '--data-dir', dataDir], env);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /imported 4 users/);
    await ask(dataDir, async (get) => {
      assert.equal((await get('/online_clients')).online_clients_count, 1);
      assert.equal((await get('/total_users?days=7')).recent_users_count, 2);
      assert.equal((await get('/total_users?days=30')).recent_users_count, 3);
      assert.equal((await get('/total_users?days=90')).recent_users_count, 4);
      // The same address heartbeating now is the same user, not a new one.
      await get('/heartbeat', '2001:db8::1');
      await get('/heartbeat', '198.51.100.9');
      assert.equal((await get('/total_users?days=90')).recent_users_count, 4);
      assert.equal((await get('/online_clients')).online_clients_count, 3);
    });
  });

  it('is idempotent: importing again changes nothing, and never moves last-seen back', async () => {
    const result = await runCli(['import', file, '--data-dir', dataDir], env);
    assert.equal(result.code, 0, result.stderr);
    await ask(dataDir, async (get) => {
      assert.equal((await get('/total_users?days=90')).recent_users_count, 4);
      assert.equal(
        (await get('/total_users?days=7')).recent_users_count,
        4,
        'the two that beat after the first import keep their newer time',
      );
    });
  });

  it('a bad entry stops the import with a message naming it, and nothing is written', async () => {
    const bad = join(dir.path, 'bad.json');
    const cases: [string, RegExp][] = [
      [JSON.stringify({ '203.0.113.50': iso(NOW), 'not-an-ip': iso(NOW) }), /not-an-ip/],
      [JSON.stringify({ '203.0.113.51': iso(NOW), '203.0.113.52': 'last tuesday' }), /203\.0\.113\.52/],
      [JSON.stringify({ '203.0.113.53': iso(NOW + 30 * DAY) }), /future/],
      [JSON.stringify(['203.0.113.54']), /object/],
      ['{"203.0.113.55": ', /JSON/],
    ];
    for (const [text, message] of cases) {
      writeFileSync(bad, text);
      const result = await runCli(['import', bad, '--data-dir', dataDir], env);
      assert.equal(result.code, 1, text);
      assert.match(result.stderr, message);
    }
    await ask(dataDir, async (get) => assert.equal((await get('/total_users?days=90')).recent_users_count, 4));
  });

  it('a missing file name is a usage error (exit 2)', async () => {
    const result = await runCli(['import', '--data-dir', dataDir], env);
    assert.equal(result.code, 2);
  });

  it('shows progress on a large file', async () => {
    const large = join(dir.path, 'large.json');
    const users: Record<string, string> = {};
    for (let i = 0; i < 250_000; i++)
      users[`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`] = iso(NOW - (i % 30) * DAY);
    writeFileSync(large, JSON.stringify(users));
    const result = await runCli(['import', large, '--data-dir', join(dir.path, 'large-data')], env);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /imported 100000 of 250000 users/);
    assert.match(result.stderr, /imported 200000 of 250000 users/);
    assert.match(result.stdout, /imported 250000 users/);
  });
});
