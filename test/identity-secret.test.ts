// The identity secret and the data belong together: a lost, replaced or overridden secret is refused at start; the key
// can live outside the data directory (--identity-secret-file); the data's files are readable by their owner only; the
// pseudonyms under it are the bytes createHmac made, which the stored data holds.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
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
import {
  PSEUDONYM_BYTES,
  Pseudonymizer,
  addressIdentity,
  addressKey,
  canonicalAddress,
  clientIdentity,
  parseClientAddress,
} from '../src/identity.js';
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

describe('pseudonyms', () => {
  // What every stored pseudonym was made with: they cannot be migrated, so the faster Pseudonymizer must match it.
  const reference = (secret: string | Buffer, identity: string): string =>
    createHmac('sha256', typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret)
      .update(identity)
      .digest()
      .subarray(0, PSEUDONYM_BYTES)
      .toString('latin1');

  let seed = 11;
  const random = (below: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return Math.floor((seed / 2147483648) * below);
  };
  // ASCII, Latin-1, other scripts, astral characters (surrogate pairs), lone surrogates (U+FFFD in UTF-8).
  const alphabet = [...'aZ7-:~éßжα中한€', '\u{1F600}', '\u{10FFFF}', '\uD800', '\uDFFF'];
  const randomText = (length: number): string =>
    Array.from({ length }, () => alphabet[random(alphabet.length)]).join('');
  const secrets: (string | Buffer)[] = [
    's'.repeat(32),
    'a0b1c2d3'.repeat(8), // 64 bytes: one SHA-256 block, used as is
    'k'.repeat(65), // longer than a block: HMAC hashes it first
    'x'.repeat(200),
    'clé secrète – ключ – 秘密の鍵 \u{1F511}'.repeat(3), // bytes, not characters, decide the block
    Buffer.from(Array.from({ length: 48 }, (_, n) => (n * 37) % 256)),
    Buffer.alloc(100, 0xff),
  ];

  it('are the bytes createHmac makes, for random ids, unicode ids, every length around a block, and long ids', () => {
    const identities: string[] = [clientIdentity(''), addressIdentity('192.0.2.1'), addressIdentity('2001:db8::1')];
    // Every UTF-8 length from 0 to 200 bytes crosses the padding boundaries (55, 56, 64 bytes and their multiples).
    for (let length = 0; length <= 200; length++) identities.push('b'.repeat(length));
    for (let n = 0; n < 1500; n++) identities.push(clientIdentity(randomText(1 + random(128))));
    // As long as the kept buffer the Pseudonymizer encodes into (512 units, 3 bytes each), and longer.
    identities.push(
      clientIdentity('中'.repeat(509)),
      clientIdentity('é'.repeat(600)),
      clientIdentity(randomText(2000)),
    );
    for (const secret of secrets) {
      const pseudonymizer = new Pseudonymizer(secret);
      for (const identity of identities) {
        const made = pseudonymizer.pseudonym(identity);
        assert.equal(made.length, PSEUDONYM_BYTES);
        assert.equal(
          made,
          reference(secret, identity),
          `secret of ${secret.length}, identity ${JSON.stringify(identity)}`,
        );
      }
    }
  });

  it('do not carry state from one call, or one secret, to the next', () => {
    const first = new Pseudonymizer(secrets[0] as string);
    const second = new Pseudonymizer(secrets[2] as string);
    const long = clientIdentity('q'.repeat(120));
    for (let n = 0; n < 3; n++) {
      assert.equal(first.pseudonym(long), reference(secrets[0] as string, long));
      assert.equal(second.pseudonym('id:'), reference(secrets[2] as string, 'id:'));
      assert.equal(first.pseudonym('id:'), reference(secrets[0] as string, 'id:'));
    }
    assert.notEqual(first.pseudonym('id:alice'), second.pseudonym('id:alice'));
  });
});

describe('client addresses', () => {
  it('one parse says what canonicalAddress() and addressKey() of its canonical text say', () => {
    const texts = [
      '192.0.2.1',
      '::ffff:192.0.2.1',
      '::ffff:c000:201',
      '2001:db8::1',
      '2001:0DB8:0000:0000:0001:0000:0000:0001',
      'fe80::1%eth0',
      '::1',
      '::',
      '0.0.0.0',
      '3ffe:1900:4545:3:200:f8ff:fe21:67cf',
    ];
    for (const text of texts) {
      const canonical = canonicalAddress(text);
      assert.ok(canonical !== null, text);
      assert.deepEqual(parseClientAddress(text), { address: canonical, block: addressKey(canonical) }, text);
    }
    for (const text of [undefined, '', 'localhost', '192.0.2.1, 10.0.0.1', '2001:db8::/64', '999.1.1.1'])
      assert.equal(parseClientAddress(text), null, String(text));
  });
});
