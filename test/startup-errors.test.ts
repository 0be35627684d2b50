// A start that cannot go on prints one line naming the problem and the fix, and exits with the code of its kind
// (documented in --help and docs/operations.md) instead of a raw stack and exit 1; an emptied database is refused.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { DATABASE_FILE } from '../src/store/sqlite.js';
import { lockDataDir } from '../src/lockfile.js';
import { SECRET, runCli, startServer, tempDir } from './support/app.js';
import { runRefusal } from './support/instances.js';
import { freePort } from './support/redis-server.js';

// The documented codes, spelt out: a test of what operators and supervisors rely on.
const CONFIG = 2;
const DATA_DIR = 3;
const STORE_UNREACHABLE = 4;

/** Exactly one line on stderr, and no stack trace in it. */
function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line, got:\n${stderr}`);
  assert.doesNotMatch(stderr, /\bat .+:\d+:\d+/, 'no stack');
  return lines[0] as string;
}

describe('start-up failures', () => {
  const dirs: { remove(): void }[] = [];
  after(() => dirs.forEach((dir) => dir.remove()));
  const dataDir = () => {
    const dir = tempDir();
    dirs.push(dir);
    return dir.path;
  };
  const serve = (dir: string, ...extra: string[]) =>
    runRefusal(['--data-dir', dir, '--identity-secret', SECRET, ...extra]);

  it('a database truncated to zero bytes is refused (exit 3) instead of starting empty', async () => {
    const dir = dataDir();
    writeFileSync(join(dir, DATABASE_FILE), '');
    const { code, stderr } = await serve(dir);
    assert.equal(code, DATA_DIR, stderr);
    const line = oneLine(stderr);
    assert.match(line, /is empty \(0 bytes\)/);
    assert.match(line, /restore it from a backup/);
    assert.match(line, /remove it to start counting afresh/);
  });

  it('a brand-new data directory (no database file at all) still starts', async () => {
    const dir = join(dataDir(), 'not', 'yet', 'there');
    const server = await startServer(['--data-dir', dir, '--identity-secret', SECRET]);
    assert.equal((await fetch(`${server.url}/heartbeat`, { method: 'POST' })).status, 200);
    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0, server.stderr());
  });

  it('a damaged database is refused with exit 3 and one line', async () => {
    const dir = dataDir();
    writeFileSync(join(dir, DATABASE_FILE), 'this is not a database, '.repeat(400));
    const { code, stderr } = await serve(dir);
    assert.equal(code, DATA_DIR, stderr);
    assert.match(oneLine(stderr), /not a (SQLite )?database.*restore it from a backup/);
  });

  it('a data directory that is a file is refused with exit 3 and one line', async () => {
    const path = join(dataDir(), 'a-file');
    writeFileSync(path, 'x');
    const { code, stderr } = await serve(path);
    assert.equal(code, DATA_DIR, stderr);
    assert.match(oneLine(stderr), /must be a directory/);
  });

  it('a data directory in use by another process is refused with exit 3 and one line', async () => {
    const dir = dataDir();
    mkdirSync(dir, { recursive: true });
    const release = lockDataDir(dir); // this test's process holds it
    try {
      const { code, stderr } = await serve(dir);
      assert.equal(code, DATA_DIR, stderr);
      assert.match(oneLine(stderr), /in use by another online-stats process .*stop it first/);
    } finally {
      release();
    }
  });

  it('Redis down at start exits 4 with one line', async () => {
    const port = await freePort();
    const { code, stderr } = await serve(dataDir(), '--store', 'redis', '--redis-url', `redis://127.0.0.1:${port}`);
    assert.equal(code, STORE_UNREACHABLE, stderr);
    assert.match(oneLine(stderr), /cannot reach redis .*--redis-url/);
  });

  it('a port in use exits 2 with one line naming --port', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = blocker.address() as AddressInfo;
      const { code, stderr } = await serve(dataDir(), '--port', String(port));
      assert.equal(code, CONFIG, stderr);
      assert.match(oneLine(stderr), /--port \/ PORT: 127\.0\.0\.1:\d+ is in use/);
    } finally {
      blocker.close();
    }
  });

  it('--help lists every exit code', async () => {
    const { EXIT_CODES } = await import('../src/errors.js');
    const { code, stdout } = await runCli(['--help']);
    assert.equal(code, 0);
    for (const { code: exitCode, meaning } of Object.values(EXIT_CODES))
      assert.ok(stdout.includes(`${exitCode}  ${meaning}`), `exit code ${exitCode} is listed`);
  });
});
