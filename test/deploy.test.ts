// The container setup without a container runtime: the Dockerfile's stages laid out as directories and the image's
// command run from them as the image would run it, and the Redis compose file's services started as processes.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { loadConfig, parseDurationMs } from '../src/config.js';
import { DATABASE_FILE } from '../src/store/sqlite.js';
import { SECRET, lockIsFree, tempDir } from './support/app.js';
import { layOut, parseDockerfile, type Stage } from './support/dockerfile.js';
import { freePort, redisCommand, startRedis } from './support/redis-server.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const stages = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
const image = stages.at(-1) as Stage;
const healthcheck = image.healthcheck?.command ?? [];
const cmd = image.cmd ?? [];

// The image runs as its user "node"; a test run as root runs the service as "nobody" in its place.
const asRoot = process.getuid?.() === 0;
const user = asRoot ? { uid: 65534, gid: 65534 } : undefined;

/** How long `docker stop` (and Docker's own shutdown) waits after the stop signal before it kills: 10 s by default. */
const DOCKER_STOP_TIMEOUT_MS = 10_000;

const durationMs = (text: string | undefined) => parseDurationMs(text ?? '') ?? assert.fail(`not a duration: ${text}`);

interface Launched {
  child: ChildProcess;
  exited: Promise<number | string>;
  output(): string;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Runs a command as a container would: its argv as is, the image's environment only (plus PATH), its user. */
function launch(command: readonly string[], cwd: string, env: Record<string, string>): Launched {
  const [file, ...args] = command as [string, ...string[]];
  const child = spawn(file, args, {
    cwd,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(user ?? {}),
  });
  running.add(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | string>((done) =>
    child.once('exit', (code, signal) => {
      running.delete(child);
      done(code ?? signal ?? -1);
    }),
  );
  return { child, exited, output: () => output };
}

/**
 * The HEALTHCHECK command's exit code, and how long it took (Docker kills it after --timeout). It runs with the
 * image's HOST (0.0.0.0: any address), as in the container, and so asks on loopback, where the server listens here.
 */
async function check(cwd: string, env: Record<string, string>): Promise<{ code: number | string; ms: number }> {
  const startedMs = Date.now();
  const code = await launch(healthcheck, cwd, { ...env, HOST: image.env.HOST ?? '' }).exited;
  return { code, ms: Date.now() - startedMs };
}

/** Runs the HEALTHCHECK until it passes, as Docker does in the start period; fails if the server exits first. */
async function healthy(server: Launched, cwd: string, env: Record<string, string>): Promise<number> {
  const startedMs = Date.now();
  const deadline = startedMs + durationMs(image.healthcheck?.options['start-period']);
  let exitCode: number | string | null = null;
  void server.exited.then((code) => (exitCode = code));
  for (;;) {
    const { code, ms } = await check(cwd, env);
    assert.ok(ms < durationMs(image.healthcheck?.options.timeout), `the healthcheck took ${ms} ms`);
    if (code === 0) return Date.now() - startedMs;
    assert.equal(code, 1, 'unhealthy is exit 1 (Docker reserves 2)');
    assert.equal(exitCode, null, `the server exited: ${server.output()}`);
    assert.ok(Date.now() < deadline, `not healthy within the start period: ${server.output()}`);
    await new Promise((done) => setTimeout(done, 200));
  }
}

const beat = (url: string, clientId: string) =>
  fetch(`${url}/heartbeat`, { method: 'POST', headers: { 'x-client-id': clientId } });

/** What an instance reports; each read from its own client id, as reads are limited to one a second per client. */
async function counts(url: string, reader: string): Promise<{ online: unknown; day: unknown }> {
  const online = await fetch(`${url}/online_clients`, { headers: { 'x-client-id': `${reader}-online` } });
  assert.equal(online.status, 200);
  const day = await fetch(`${url}/total_users?days=1`, { headers: { 'x-client-id': `${reader}-day` } });
  assert.equal(day.status, 200);
  return {
    online: ((await online.json()) as { online_clients_count: unknown }).online_clients_count,
    day: ((await day.json()) as { recent_users_count: unknown }).recent_users_count,
  };
}

/** pino's JSON lines at warn (40) or above. */
const warnings = (log: string) =>
  log.split('\n').filter((line) => line.startsWith('{') && (JSON.parse(line) as { level: number }).level >= 40);

describe('the Dockerfile', () => {
  it(
    'builds a runtime tree without sources or dev tools whose command serves, passes its healthcheck and stops on SIGTERM',
    { timeout: 90_000 },
    async (t) => {
      const dir = tempDir('online-stats-image-');
      try {
        // mkdtemp makes a 0700 directory, which the unprivileged user could not enter.
        if (user) chmodSync(dir.path, 0o755);
        const builtMs = Date.now();
        const [build, runtime] = layOut(stages, {
          context: ROOT,
          into: dir.path,
          ...(user ? { owner: user } : {}),
          log: (message) => t.diagnostic(message),
        });
        t.diagnostic(`stages laid out in ${Date.now() - builtMs} ms`);
        assert.ok(build && runtime && stages.length === 2, 'two stages: build and runtime');

        // Nothing of the build stays behind but the built service and its production dependencies.
        const app = runtime.path(image.workdir);
        assert.deepEqual(readdirSync(app).sort(), [
          'LICENSE',
          'README.md',
          'dist',
          'node_modules',
          'package-lock.json',
          'package.json',
        ]);
        assert.ok(!existsSync(join(app, 'src')) && !existsSync(join(app, 'dist', 'test')), 'no sources, no tests');
        assert.ok(!existsSync(join(app, 'node_modules', 'typescript')), 'no compiler');
        const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8')) as {
          packages: Record<string, { dev?: boolean; optional?: boolean; devOptional?: boolean; peer?: boolean }>;
        };
        for (const [path, entry] of Object.entries(lock.packages)) {
          if (path === '') continue;
          if (entry.dev) assert.ok(!existsSync(join(app, path)), `dev dependency ${path} is not in the image`);
          else if (!entry.optional && !entry.devOptional && !entry.peer)
            assert.ok(existsSync(join(app, path)), `dependency ${path} is in the image`);
        }
        assert.ok(existsSync(join(app, cmd[1] as string)), `${cmd.join(' ')}: its script is there`);

        // What the image declares fits together: the data directory is the volume, the port the exposed one.
        assert.notEqual(image.user, null);
        assert.notEqual(image.user, 'root');
        assert.deepEqual(image.volumes, [image.env.DATA_DIR]);
        assert.deepEqual(image.exposed, [image.env.PORT]);
        assert.equal(image.stopSignal ?? 'SIGTERM', 'SIGTERM');
        assert.equal(image.env.NODE_ENV, 'production');

        // The image's environment, but loopback and a free port (tests share this machine), and /data in the tree.
        // No identity secret: as `docker run` in the Dockerfile's header, the service makes one in /data.
        const dataDir = runtime.path(image.env.DATA_DIR as string);
        const env = { ...image.env, HOST: '127.0.0.1', PORT: String(await freePort()), DATA_DIR: dataDir };
        if (user) assert.equal(statSync(dataDir).uid, user.uid, 'the data directory belongs to the image user');

        const before = await check(app, env);
        assert.equal(before.code, 1, 'unhealthy while nothing listens');

        const server = launch(cmd, app, env);
        try {
          t.diagnostic(`healthy after ${await healthy(server, app, env)} ms`);
          const url = `http://127.0.0.1:${env.PORT}`;
          assert.equal((await beat(url, 'image-client')).status, 200);
          assert.deepEqual(await counts(url, 'image-reader'), { online: 1, day: 1 });
          // The dashboard, the SDK it loads, and the API docs: files read from dist/ and node_modules/ at run time.
          for (const path of ['/', '/client.js', '/docs', '/openapi.json']) {
            assert.equal((await fetch(`${url}${path}`)).status, 200, path);
          }

          // `docker stop` sends the stop signal and kills after 10 s: the drain must fit, even held up by a client
          // that sent half a request, which it waits for until its SHUTDOWN_TIMEOUT.
          const halfSent = connect({ host: '127.0.0.1', port: Number(env.PORT) });
          halfSent.on('error', () => {});
          await new Promise((done) => halfSent.once('connect', done));
          halfSent.write('POST /heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n');
          await new Promise((done) => setTimeout(done, 100));
          const stoppedMs = Date.now();
          server.child.kill((image.stopSignal ?? 'SIGTERM') as NodeJS.Signals);
          assert.equal(await server.exited, 0, server.output());
          const drainedMs = Date.now() - stoppedMs;
          halfSent.destroy();
          t.diagnostic(`exited ${drainedMs} ms after ${image.stopSignal}`);
          assert.ok(
            drainedMs < DOCKER_STOP_TIMEOUT_MS,
            `exited ${drainedMs} ms after the signal, before docker stop kills`,
          );
          // The one warning: the half-sent request was cut off.
          assert.deepEqual(
            warnings(server.output()).map((line) => (JSON.parse(line) as { msg: string }).msg),
            ['in-flight requests did not finish in time; closing anyway'],
          );
          assert.equal((await check(app, env)).code, 1, 'unhealthy once stopped');
        } finally {
          server.child.kill('SIGKILL');
        }
        assert.ok(lockIsFree(dataDir), 'the data directory was released');
        for (const file of [DATABASE_FILE, 'identity-secret']) {
          assert.ok(existsSync(join(dataDir, file)), `${file} is in the data directory`);
          if (user) assert.equal(statSync(join(dataDir, file)).uid, user.uid, `${file} belongs to the image user`);
        }
      } finally {
        dir.remove();
      }
    },
  );
});

interface ComposeService {
  image?: string;
  build?: { context: string };
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  ports?: string[];
  stop_grace_period?: string;
}

/** Compose's ${NAME}, ${NAME:-default} and ${NAME:?error}. */
function interpolate(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\{(\w+)(?::([-?])([^}]*))?\}/g, (_, name: string, kind?: string, text?: string) => {
    const given = vars[name];
    if (given !== undefined && given !== '') return given;
    if (kind === '?') throw new Error(`${name}: ${text}`);
    return kind === '-' ? (text ?? '') : '';
  });
}

describe('the Redis compose file', () => {
  const composeFile = join(ROOT, 'deploy', 'compose.redis.yaml');
  const compose = parse(readFileSync(composeFile, 'utf8'), { merge: true }) as {
    services: Record<string, ComposeService>;
  };
  const services = Object.entries(compose.services);
  const redisService = compose.services.redis as ComposeService;
  const instances = services.filter(([, service]) => service.build !== undefined);
  /** A service's environment, with the variable compose requires set: the same identity secret for all. */
  const environmentOf = (service: ComposeService) =>
    Object.fromEntries(
      Object.entries(service.environment ?? {}).map(([key, value]) => [
        key,
        interpolate(String(value), { ONLINE_STATS_IDENTITY_SECRET: SECRET }),
      ]),
    );

  it('runs two instances of the image after a healthy Redis, with time to drain on stop', () => {
    assert.deepEqual(
      services.map(([name]) => name),
      ['redis', 'online-stats-1', 'online-stats-2'],
    );
    assert.equal(instances.length, 2);
    assert.ok(redisService.image?.startsWith('redis:') && redisService.healthcheck);
    for (const [name, service] of instances) {
      // The drain the instance is configured with: the image's environment, then the service's.
      const shutdownMs = loadConfig([], { ...image.env, ...environmentOf(service) }).shutdownTimeoutMs;
      const context = resolve(dirname(composeFile), service.build?.context ?? '');
      assert.ok(existsSync(join(context, 'Dockerfile')), `${name} is built from the Dockerfile`);
      assert.deepEqual(service.depends_on, { redis: { condition: 'service_healthy' } }, name);
      assert.ok(durationMs(service.stop_grace_period) > shutdownMs, `${name} may drain for ${shutdownMs} ms`);
      // Each instance publishes the port the image listens on.
      assert.equal(service.ports?.length, 1);
      assert.equal(service.ports?.[0]?.split(':')[1], image.env.PORT, name);
    }
    assert.equal(new Set(instances.map(([, service]) => service.ports?.[0]?.split(':')[0])).size, 2, 'own ports');
  });

  it(
    "counts a user seen by both instances once, on a Redis run with the file's command",
    { timeout: 60_000 },
    async (t) => {
      const command = redisService.command ?? [];
      assert.equal(command[0], 'redis-server');
      const redis = await startRedis({ args: command.slice(1) });
      const dirs = instances.map(() => tempDir('online-stats-compose-'));
      const servers: Launched[] = [];
      try {
        assert.match((await redisCommand(redis.port, 'CONFIG GET appendonly')) ?? '', /appendonly\r\n\$3\r\nyes/);
        assert.match((await redisCommand(redis.port, 'CONFIG GET appendfsync')) ?? '', /everysec/);

        const urls: string[] = [];
        for (const [index, [name, service]] of instances.entries()) {
          const environment = environmentOf(service);
          // The file names Redis by its service name, on its default port; here it is the test's server.
          assert.equal(environment.REDIS_URL, 'redis://redis:6379', name);
          const dir = dirs[index] as { path: string };
          if (user) chmodSync(dir.path, 0o755);
          if (user) chownSync(dir.path, user.uid, user.gid);
          const port = String(await freePort());
          const env = {
            ...image.env,
            ...environment,
            REDIS_URL: redis.url,
            HOST: '127.0.0.1',
            PORT: port,
            DATA_DIR: dir.path,
          };
          // The image's command, from the repository's own build (the previous test ran it from the image's tree).
          const server = launch(cmd, ROOT, env);
          servers.push(server);
          t.diagnostic(`${name} healthy after ${await healthy(server, ROOT, env)} ms`);
          urls.push(`http://127.0.0.1:${port}`);
        }
        const [first, second] = urls as [string, string];
        assert.equal((await beat(first, 'compose-client')).status, 200);
        // Past the one-a-second limit, which the instances share through Redis.
        await new Promise((done) => setTimeout(done, 1100));
        assert.equal((await beat(second, 'compose-client')).status, 200);
        assert.deepEqual(await counts(first, 'reader-1'), { online: 1, day: 1 });
        assert.deepEqual(await counts(second, 'reader-2'), { online: 1, day: 1 });

        for (const [index, server] of servers.entries()) {
          const graceMs = durationMs(instances[index]?.[1].stop_grace_period);
          const stoppedMs = Date.now();
          server.child.kill('SIGTERM');
          assert.equal(await server.exited, 0, server.output());
          assert.ok(Date.now() - stoppedMs < graceMs, 'stopped within stop_grace_period');
          assert.deepEqual(warnings(server.output()), [], 'nothing warned or failed');
        }
        // The append-only file is where Redis keeps the heartbeats.
        assert.ok(existsSync(join(redis.dir, 'appendonlydir')), 'Redis writes its append-only file');
      } finally {
        for (const server of servers) server.child.kill('SIGKILL');
        await Promise.all(servers.map((server) => server.exited));
        await redis.stop();
        for (const dir of dirs) dir.remove();
      }
    },
  );
});
