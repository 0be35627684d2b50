// The identity secret and the data belong together: a lost, replaced or overridden secret is refused at start; the key
// can live outside the data directory (--identity-secret-file); the data's files are readable by their owner only.
import assert from 'node:assert/strict';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { defaultConfig, loadConfig } from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import { Pseudonymizer, clientIdentity } from '../src/identity.js';
import { serve } from '../src/server.js';
import { DATABASE_FILE } from '../src/store/sqlite.js';
import { runRefusal } from './support/instances.js';

describe('identity secret', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'os-secret-'));
  after(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = (overrides = {}) =>
    defaultConfig({ dataDir, port: 0, host: '127.0.0.1', logLevel: 'silent', ...overrides });
  const mismatch = (error: unknown) =>
    error instanceof ConfigError &&
    /--identity-secret/.test(error.message) &&
    /different identity secret/.test(error.message);

  it('a lost or overridden identity secret stops start-up instead of counting every user again', async () => {
    const first = await serve(config());
    await first.app.inject({ method: 'POST', url: '/heartbeat' });
    await first.stop();
    const secretFile = join(dataDir, 'identity-secret');
    const original = readFileSync(secretFile, 'utf8');

    await assert.rejects(serve(config({ identitySecret: 'x'.repeat(40) })), mismatch, 'an overriding secret');
    unlinkSync(secretFile);
    await assert.rejects(serve(config()), mismatch, 'a lost secret file (a new one is made, and refused)');

    writeFileSync(secretFile, original);
    const restored = await serve(config());
    try {
      const total = (await restored.app.inject({ url: '/total_users?days=1' })).json();
      assert.equal(total.recent_users_count, 1, 'with the secret back, the known user is the same user');
    } finally {
      await restored.stop();
    }
  });

  it('the key can be kept outside the data directory (--identity-secret-file), so a copy of it cannot reverse pseudonyms', async () => {
    const outside = mkdtempSync(join(tmpdir(), 'os-key-'));
    const dir = mkdtempSync(join(tmpdir(), 'os-data-'));
    try {
      const key = 'k'.repeat(48);
      const keyFile = join(outside, 'identity-secret');
      writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
      const fromFile = (extra: string[] = []) =>
        loadConfig(
          ['--data-dir', dir, '--identity-secret-file', keyFile, '--port', '0', '--host', '127.0.0.1', ...extra],
          { LOG_LEVEL: 'silent' },
        );
      const first = await serve(fromFile());
      await first.app.inject({ method: 'POST', url: '/heartbeat', headers: { 'x-client-id': 'alice' } });
      await first.stop();
      assert.ok(!existsSync(join(dir, 'identity-secret')), 'no key was written into the data directory');
      const db = new Database(join(dir, DATABASE_FILE), { readonly: true });
      try {
        const ids = db.prepare<[], Buffer>('SELECT id FROM identities').pluck().all();
        assert.deepEqual(
          ids.map((id) => id.toString('latin1')),
          [new Pseudonymizer(key).pseudonym(clientIdentity('alice'))],
          'pseudonymised under the key of the file',
        );
      } finally {
        db.close();
      }
      const again = await serve(fromFile());
      try {
        const total = (await again.app.inject({ url: '/total_users?days=1' })).json();
        assert.equal(total.recent_users_count, 1, 'the same key again: the same user');
      } finally {
        await again.stop();
      }
    } finally {
      rmSync(outside, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an empty, short, unreadable or doubled --identity-secret-file is refused with exit 2 naming it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'os-key-'));
    try {
      const empty = join(dir, 'empty');
      writeFileSync(empty, '\n');
      const short = join(dir, 'short');
      writeFileSync(short, 'too-short');
      const good = join(dir, 'good');
      writeFileSync(good, 'g'.repeat(40));
      const cases: [string[], RegExp][] = [
        [['--identity-secret-file', empty], /is empty/],
        [['--identity-secret-file', short], /at least 32/],
        [['--identity-secret-file', join(dir, 'missing')], /cannot read .*missing/],
        [['--identity-secret-file', good, '--identity-secret', 's'.repeat(40)], /not both/],
      ];
      for (const [args, why] of cases) {
        const { code, stderr } = await runRefusal(['--data-dir', join(dir, 'data'), ...args]);
        assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
        assert.match(stderr, /--identity-secret-file \/ IDENTITY_SECRET_FILE/);
        assert.match(stderr, why);
        assert.equal(stderr.trim().split('\n').length, 1, stderr);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the database, its WAL and SHM and the identity secret are mode 0600 whatever the umask', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'os-modes-'));
    const previous = process.umask(0o022);
    try {
      // A database an older version left readable by everyone is tightened too.
      mkdirSync(join(dir, 'old'));
      const old = new Database(join(dir, 'old', DATABASE_FILE));
      old.exec('CREATE TABLE leftover (a)');
      old.close();
      chmodSync(join(dir, 'old', DATABASE_FILE), 0o644);
      const running = [
        await serve(config({ dataDir: dir })),
        await serve(config({ dataDir: join(dir, 'old'), identitySecret: 'o'.repeat(40) })),
      ];
      try {
        for (const { app } of running) await app.inject({ method: 'POST', url: '/heartbeat' });
        const files = [DATABASE_FILE, `${DATABASE_FILE}-wal`, `${DATABASE_FILE}-shm`];
        for (const file of [...files, 'identity-secret', ...files.map((name) => join('old', name))]) {
          const mode = statSync(join(dir, file)).mode & 0o777;
          assert.equal(mode.toString(8), '600', file);
        }
      } finally {
        for (const { stop } of running) await stop();
      }
    } finally {
      process.umask(previous);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
