// The npm package as a user gets it: `npm pack`ed, installed by its name into an empty project, run with npx (and
// stopped through it), embedded in a Fastify app as the README shows, and its client SDK imported.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { SECRET, lockIsFree, tempDir, untilListening, type ServerProcess } from './support/app.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
const BINDING = join('node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node');
const run = promisify(execFile);

/**
 * The environment of a user's shell: npm gives the scripts it runs (`npm test`) variables such as
 * npm_config_local_prefix (the repository) and npm_config_call, which the npm and npx started here would obey.
 * Where the cache and the registry are is kept.
 */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig']);
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key) || keep.has(key)));
  return { ...env, ...extra };
}

function versionOf(dir: string, name: string): string {
  return (JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'), 'utf8')) as { version: string })
    .version;
}

/** Every file under `dir`, as paths relative to `from`. */
function filesUnder(dir: string, from: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(from, join(entry.parentPath, entry.name)));
}

/** Resolves once the process `pid` (not a child of this one) is gone. */
async function gone(pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    if (Date.now() > deadline) throw new Error(`process ${pid} still runs ${timeoutMs} ms later`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** /online_clients, waiting out the read limit (one a second by default) when it answers 429. */
async function onlineCount(url: string): Promise<number> {
  let response = await fetch(`${url}/online_clients`);
  if (response.status === 429) {
    await new Promise((resolve) => setTimeout(resolve, Number(response.headers.get('retry-after')) * 1000));
    response = await fetch(`${url}/online_clients`);
  }
  assert.equal(response.status, 200);
  return ((await response.json()) as { online_clients_count: number }).online_clients_count;
}

async function heartbeat(url: string, clientId: string): Promise<void> {
  const response = await fetch(`${url}/heartbeat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_id: clientId }),
  });
  assert.equal(response.status, 200, await response.text());
}

describe('the npm package, installed from its tarball', () => {
  const work = tempDir('online-stats-package-');
  const project = join(work.path, 'project');
  let files: string[] = [];
  const timings: string[] = [];
  const servers: ServerProcess[] = [];
  /** Servers that are not children of this process (npx's). */
  const grandchildren: number[] = [];

  before(
    async () => {
      // npm test builds dist/ first, as npm publish does (prepublishOnly); --ignore-scripts skips prepack's build.
      assert.ok(existsSync(join(ROOT, 'dist', 'src', 'cli.js')), 'dist/ is built (npm run build)');
      let startedMs = Date.now();
      const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work.path], {
        cwd: ROOT,
        env: userEnv(),
      });
      const [packed] = JSON.parse(stdout) as [{ filename: string; files: { path: string }[] }];
      files = packed.files.map((file) => file.path);
      const tarball = join(work.path, packed.filename);
      timings.push(`packed in ${Date.now() - startedMs} ms`);

      mkdirSync(project);
      await run('npm', ['init', '-y'], { cwd: project, env: userEnv() });
      // The binding copied below is the repository's better-sqlite3's: the project gets the same version.
      const sqliteVersion = versionOf(ROOT, 'better-sqlite3');
      await run('npm', ['pkg', 'set', `overrides.better-sqlite3=${sqliteVersion}`], { cwd: project, env: userEnv() });
      startedMs = Date.now();
      // --prefer-offline, not --offline: npm ci caches the tarballs of the lock file, not the registry's metadata
      // that resolving the package's dependency ranges reads (--offline fails with ENOTCACHED); the tarballs come
      // from the cache.
      // --ignore-scripts: better-sqlite3's install script finds no prebuilt binding to download here and compiles
      // SQLite from source, which took 90 s of this test's budget on two cores. Its build/Release/better_sqlite3.node
      // is copied from the repository instead: the same version (checked), built for this same Node by npm ci, which
      // runs that very script on every install of the repository.
      await run(
        'npm',
        ['install', tarball, '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'],
        { cwd: project, env: userEnv() },
      );
      timings.push(`installed in ${Date.now() - startedMs} ms`);
      assert.equal(versionOf(project, 'better-sqlite3'), sqliteVersion);
      mkdirSync(join(project, BINDING, '..'), { recursive: true });
      copyFileSync(join(ROOT, BINDING), join(project, BINDING));
    },
    { timeout: 60_000 },
  );

  after(() => {
    for (const server of servers) server.child.kill('SIGKILL');
    for (const pid of grandchildren)
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    work.remove();
  });

  it('holds the built code, its types, the dashboard, the docs and the licence, and no sources', (t) => {
    t.diagnostic(timings.join(', '));
    const has = new Set(files);
    const expected = [
      'package.json',
      'README.md',
      'LICENSE',
      'CHANGELOG.md',
      'dist/src/cli.js',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/client/index.js',
      'dist/client/index.d.ts',
      // What the service reads at run time next to its code: the dashboard, SQL and Lua (scripts/copy-assets.mjs).
      ...filesUnder(join(ROOT, 'src'), ROOT)
        .filter((path) => /\.(sql|lua|html|css|js|svg|png|ico)$/.test(path))
        .map((path) => `dist/${path}`),
      ...filesUnder(join(ROOT, 'docs'), ROOT),
    ];
    assert.ok(expected.includes('dist/src/dashboard/index.html'), expected.join(' '));
    assert.deepEqual(
      expected.filter((path) => !has.has(path)),
      [],
      'missing from the package',
    );
    assert.deepEqual(
      files.filter((path) => /^(test|bench|src|client|deploy|node_modules)\//.test(path)),
      [],
      'not in the package',
    );
    assert.deepEqual(
      files.filter((path) => path.endsWith('.ts') && !path.endsWith('.d.ts')),
      [],
      'no TypeScript sources',
    );
    // The maps point at ../../src/*.ts, which the package does not hold.
    assert.deepEqual(
      files.filter((path) => path.endsWith('.map')),
      [],
      'no source maps',
    );
  });

  it('runs by its name with npx, and stops when npx is stopped', { timeout: 30_000 }, async () => {
    const { stdout } = await run('npx', ['--no-install', PACKAGE.name, '--version'], { cwd: project, env: userEnv() });
    assert.equal(stdout.trim(), PACKAGE.version);

    const dataDir = join(work.path, 'npx-data');
    const args = ['serve', '--port', '0', '--host', '127.0.0.1', '--data-dir', dataDir, '--identity-secret', SECRET];
    const npx = spawn('npx', ['--no-install', PACKAGE.name, ...args], {
      cwd: project,
      env: userEnv({ LOG_LEVEL: 'info' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const server = await untilListening(npx);
    servers.push(server);
    // npx is `npm exec`, which runs the command under `sh -c`: the server is its grandchild, and its pid is in its log.
    const pid = Number(/"pid":(\d+)/.exec(server.stdout())?.[1]);
    grandchildren.push(pid);
    assert.notEqual(pid, npx.pid);
    await heartbeat(server.url, 'a');
    assert.equal(await onlineCount(server.url), 1);
    assert.equal(lockIsFree(dataDir), false, 'the server holds the data directory');

    // npm passes SIGTERM on to the shell, which (as dash) dies of it without passing it on: the server had run on.
    npx.kill('SIGTERM');
    await server.exited;
    await gone(pid, 5_000);
    await assert.rejects(fetch(`${server.url}/healthz`), 'nothing listens any more');
    assert.ok(lockIsFree(dataDir), 'the data directory was released');
    assert.match(server.stdout(), /shutting down/, 'the server drained');
    assert.doesNotMatch(server.stdout(), /"level":50/, 'no error logged');
  });

  it(
    'embeds in a Fastify app as the README shows, and its client SDK heartbeats to it',
    { timeout: 30_000 },
    async () => {
      // The README's example as it stands, on a free port of the loopback instead of 3000.
      const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
      const example = /## Embedding in a Fastify app\n[\s\S]*?```js\n([\s\S]*?)```/.exec(readme)?.[1];
      assert.ok(
        example !== undefined && example.includes('app.listen({ port: 3000 })'),
        'the README embeds the plugin',
      );
      // fastify is not a dependency of the project: it resolves as the one the package brought (hoisted).
      writeFileSync(
        join(project, 'host.mjs'),
        example.replace('app.listen({ port: 3000 })', "app.listen({ port: 0, host: '127.0.0.1' })"),
      );
      const host = await untilListening(
        spawn(process.execPath, ['host.mjs'], { cwd: project, env: userEnv(), stdio: ['ignore', 'pipe', 'pipe'] }),
      );
      servers.push(host);
      const stats = `${host.url}/stats`;
      await heartbeat(stats, 'a');
      assert.equal(await onlineCount(stats), 1);
      const page = await fetch(`${host.url}/`);
      assert.equal(page.status, 200);
      assert.equal(await page.text(), 'my app', "the host's own route");
      assert.equal((await fetch(`${stats}/`)).status, 200, 'the dashboard under the prefix');

      // The SDK, imported by its subpath from an ES module, as docs/client.md shows for Node.
      writeFileSync(
        join(project, 'beat.mjs'),
        `import { createHeartbeat } from 'online-stats-server/client';

const heartbeat = createHeartbeat({
  url: process.argv[2],
  clientId: 'sdk',
  onResult: (result) => {
    heartbeat.stop();
    console.log(JSON.stringify({ kind: result.kind, status: result.status }));
  },
});
heartbeat.start();
`,
      );
      const beat = await run(process.execPath, ['beat.mjs', stats], { cwd: project, env: userEnv() });
      assert.deepEqual(JSON.parse(beat.stdout), { kind: 'ok', status: 200 });
      assert.equal(await onlineCount(stats), 2);

      // Every path the package exports is in it (the SDK's types included).
      const installed = join(project, 'node_modules', PACKAGE.name);
      const { exports } = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as {
        exports: Record<string, string | Record<string, string>>;
      };
      for (const target of Object.values(exports).flatMap((entry) =>
        typeof entry === 'string' ? [entry] : Object.values(entry),
      ))
        assert.ok(existsSync(join(installed, target)), `${target} is in the package`);
      assert.ok(existsSync(join(installed, 'dist', 'client', 'index.d.ts')));

      host.child.kill('SIGTERM');
      await host.exited;
      assert.ok(lockIsFree(join(project, 'online-stats-data')), 'the data directory was released');
    },
  );
});
