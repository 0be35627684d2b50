// Real redis-server processes for tests: standalone servers and a three-master cluster on free loopback ports, torn
// down after.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HOST = '127.0.0.1';
const STARTUP_TIMEOUT_MS = 10_000;

/** A port the kernel just handed out on 127.0.0.1; free when returned (another process could still take it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/**
 * Sends one inline command and returns the raw reply (a line, or a whole bulk string), or null when nothing answers.
 */
export function redisCommand(port: number, command: string, timeoutMs = 1000): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = connect({ host: HOST, port });
    let data = '';
    const done = (value: string | null) => {
      socket.destroy();
      resolve(value);
    };
    socket.setTimeout(timeoutMs, () => done(null));
    socket.on('error', () => done(null));
    socket.on('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk) => {
      data += chunk.toString('utf8');
      const end = data.indexOf('\r\n');
      if (end < 0) return;
      // A bulk reply ($<length>) is complete once its whole body has arrived.
      if (data.startsWith('$')) {
        const length = Number(data.slice(1, end));
        if (length >= 0 && Buffer.byteLength(data) < end + 2 + length + 2) return;
      }
      done(data);
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = STARTUP_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const running = new Set<ChildProcess>();
const dirs = new Set<string>();
// A test that throws before its teardown still leaves no redis-server or directory behind.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** SIGKILL: the server dies at once, as in a crash. Resolves once the process is gone. */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT: the server hangs with its connections open, as an unreachable host looks to a client. */
  pause(): void;
  resume(): void;
  /** Starts it again on the same port and directory (same data when persistence is on). */
  restart(): Promise<void>;
  /** Stops it and removes its directory. */
  stop(): Promise<void>;
}

export interface RedisServerOptions {
  /** Extra redis-server arguments, e.g. ['--appendonly', 'yes']. */
  args?: readonly string[];
  port?: number;
}

/**
 * Starts `redis-server` on a free loopback port with its own temp directory; nothing saved unless
 * `args` ask. Tries another port if the one picked was taken meanwhile (others run tests here too).
 */
export async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startRedisOnce(options);
    } catch (error) {
      if (options.port !== undefined || attempt >= 3) throw error;
    }
  }
}

async function startRedisOnce(options: RedisServerOptions): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'online-stats-redis-'));
  dirs.add(dir);
  const port = options.port ?? (await freePort());
  const args = [
    '--port',
    String(port),
    '--bind',
    HOST,
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'no',
    '--logfile',
    'redis.log',
    ...(options.args ?? []),
  ];
  let child: ChildProcess | null = null;

  const launch = async () => {
    const started = spawn('redis-server', args, { stdio: 'ignore' });
    running.add(started);
    started.once('exit', () => running.delete(started));
    child = started;
    await waitFor(`redis-server on port ${port}`, async () => {
      if (started.exitCode !== null)
        throw new Error(`redis-server exited with ${started.exitCode} (see ${dir}/redis.log)`);
      // Ours, not another process that took the port first.
      const reply = await redisCommand(port, 'INFO server', 200);
      return reply !== null && reply.includes(`process_id:${started.pid}\r\n`);
    });
  };
  const kill = async () => {
    const current = child;
    child = null;
    if (!current || current.exitCode !== null || current.signalCode !== null) return;
    const exited = new Promise((resolve) => current.once('exit', resolve));
    current.kill('SIGKILL');
    current.kill('SIGCONT');
    await exited;
  };

  try {
    await launch();
  } catch (error) {
    await kill();
    rmSync(dir, { recursive: true, force: true });
    dirs.delete(dir);
    throw error;
  }
  return {
    port,
    url: `redis://${HOST}:${port}`,
    dir,
    kill,
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
    restart: launch,
    async stop() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
      dirs.delete(dir);
    },
  };
}

export interface RedisCluster {
  readonly nodes: readonly RedisServer[];
  /** Comma-separated seed URLs, as --redis-url takes them. */
  readonly url: string;
  stop(): Promise<void>;
}

/** Three masters, no replicas, slots split evenly by `redis-cli --cluster create`. */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const nodes: RedisServer[] = [];
  try {
    for (let i = 0; i < masters; i++) {
      for (let attempt = 1; ; attempt++) {
        // The cluster bus gets its own free port (cluster-port, Redis 7), not port + 10000 which may be taken.
        const busPort = await freePort();
        const args = [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf',
          '--cluster-port',
          String(busPort),
          '--cluster-node-timeout',
          '2000',
        ];
        try {
          nodes.push(await startRedis({ args }));
          break;
        } catch (error) {
          if (attempt >= 3) throw error;
        }
      }
    }
    const create = spawnSync(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...nodes.map((node) => `${HOST}:${node.port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}\n${create.stderr}`);
    await waitFor('cluster_state:ok on every node', async () => {
      for (const node of nodes) {
        const info = await redisCommand(node.port, 'CLUSTER INFO');
        if (info === null || !info.includes('cluster_state:ok')) return false;
      }
      return true;
    });
  } catch (error) {
    for (const node of nodes) await node.stop();
    throw error;
  }
  return {
    nodes,
    url: nodes.map((node) => node.url).join(','),
    async stop() {
      for (const node of nodes) await node.stop();
    },
  };
}
