// Child processes and scratch directories of the benchmarks: every one is tracked and killed (SIGKILL) or removed on
// exit, also on failure.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { redisCommand, type RedisServer } from '../test/support/redis-server.js';

// The tests' helper: a port the kernel just handed out on 127.0.0.1 (uvicorn, and a restart on the same port, need one
// chosen up front).
export { freePort } from '../test/support/redis-server.js';

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CLI = join(REPO_ROOT, 'dist', 'src', 'cli.js');
/** The HMAC key every benchmark service runs with, so the benchmark can compute the pseudonyms it stores. */
export const SECRET = 'online-stats-benchmark-secret-0123456789abcdef';
/** How long a process may take to start listening before the benchmark gives up on it. */
const START_TIMEOUT_MS = 60_000;
/**
 * Lines of output kept per stream, for error messages; the rest is read and dropped so a child never blocks on a full
 * pipe.
 */
const KEPT_LINES = 200;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Tracked {
  readonly label: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<Exit>;
  /** The last lines of stdout and stderr. */
  tail(): string;
  /**
   * Resolves with the first line (past or future) of stdout or stderr matching `pattern`; rejects if the process exits
   * first or time runs out.
   */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray>;
}

const alive = new Set<Tracked>();
const scratch = new Set<string>();

// 'exit' handlers must be synchronous: SIGKILL cannot be refused, and rmSync finishes before the process does.
process.once('exit', () => {
  for (const tracked of alive) tracked.child.kill('SIGKILL');
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** A directory under the system temp dir, removed when the benchmark exits. */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `online-stats-bench-${prefix}-`));
  scratch.add(dir);
  return dir;
}

export function spawnTracked(label: string, command: string, args: readonly string[], cwd = REPO_ROOT): Tracked {
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters = new Set<(line: string) => void>();
  const onLine = (line: string) => {
    lines.push(line);
    if (lines.length > KEPT_LINES) lines.shift();
    for (const waiter of waiters) waiter(line);
  };
  if (child.stdout) createInterface({ input: child.stdout }).on('line', onLine);
  if (child.stderr) createInterface({ input: child.stderr }).on('line', onLine);
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => {
      alive.delete(tracked);
      resolve({ code, signal });
    });
    child.once('error', (error) => {
      onLine(`spawn failed: ${error.message}`);
      alive.delete(tracked);
      resolve({ code: -1, signal: null });
    });
  });
  const tracked: Tracked = {
    label,
    child,
    pid: child.pid ?? -1,
    exited,
    tail: () => lines.slice(-20).join('\n'),
    waitForLine(pattern, timeoutMs) {
      const seen = lines.map((line) => pattern.exec(line)).find((match) => match !== null);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const done = () => {
          clearTimeout(timer);
          waiters.delete(waiter);
        };
        const waiter = (line: string) => {
          const match = pattern.exec(line);
          if (match) {
            done();
            resolve(match);
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${label}: no line matching ${pattern} within ${timeoutMs} ms:\n${tracked.tail()}`));
        }, timeoutMs);
        waiters.add(waiter);
        void exited.then((exit) => {
          done();
          reject(
            new Error(`${label} exited (${exit.code ?? exit.signal}) before printing ${pattern}:\n${tracked.tail()}`),
          );
        });
      });
    },
  };
  alive.add(tracked);
  return tracked;
}

/** Sends `signal`, waits up to `graceMs` for the exit, then SIGKILLs. */
export async function stop(
  tracked: Tracked,
  signal: NodeJS.Signals = 'SIGTERM',
  graceMs = 10_000,
): Promise<Exit & { forced: boolean }> {
  if (tracked.child.exitCode !== null || tracked.child.signalCode !== null)
    return { ...(await tracked.exited), forced: false };
  tracked.child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), graceMs)));
  const exit = await Promise.race([tracked.exited, timedOut]);
  clearTimeout(timer);
  if (exit !== null) return { ...exit, forced: false };
  tracked.child.kill('SIGKILL');
  return { ...(await tracked.exited), forced: true };
}

export interface Listening {
  process: Tracked;
  url: string;
  port: number;
}

const LISTENING = /Server listening at (http:\/\/127\.0\.0\.1:(\d+))/;

async function listening(tracked: Tracked): Promise<Listening> {
  try {
    const match = await tracked.waitForLine(LISTENING, START_TIMEOUT_MS);
    return { process: tracked, url: match[1] as string, port: Number(match[2]) };
  } catch (error) {
    await stop(tracked, 'SIGKILL');
    throw error;
  }
}

/**
 * The built service (`npm run build` first) on 127.0.0.1, with `nodeFlags` for node itself (--cpu-prof); `cli`: another
 * build's (a baseline).
 */
export function startService(
  args: readonly string[],
  options: { port?: number; nodeFlags?: readonly string[]; cli?: string } = {},
): Promise<Listening> {
  const serveArgs = [
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    String(options.port ?? 0),
    '--log-level',
    'info',
    '--identity-secret',
    SECRET,
    ...args,
  ];
  const cli = options.cli ?? CLI;
  return listening(spawnTracked('online-stats', process.execPath, [...(options.nodeFlags ?? []), cli, ...serveArgs]));
}

/**
 * A server of bench/ (`file` under bench/, printing the service's "Server listening at" line), in its own process like
 * the service.
 */
export function startPeer(label: string, file: string, args: readonly string[] = []): Promise<Listening> {
  return listening(spawnTracked(label, process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench', file), ...args]));
}

/** The bare Fastify route of bench/baseline.ts. */
export const startBaseline = (): Promise<Listening> => startPeer('baseline', 'baseline.ts');

/** Runs a command to its end (bounded by `timeoutMs`), throwing with its output unless it exits 0. */
export async function runToEnd(
  label: string,
  command: string,
  args: readonly string[],
  timeoutMs: number,
  cwd = REPO_ROOT,
): Promise<void> {
  const tracked = spawnTracked(label, command, args, cwd);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
  const exit = await Promise.race([tracked.exited, timedOut]);
  clearTimeout(timer);
  if (exit === null) {
    await stop(tracked, 'SIGKILL');
    throw new Error(`${label} did not finish in ${timeoutMs} ms:\n${tracked.tail()}`);
  }
  if (exit.code !== 0) throw new Error(`${label} exited ${exit.code ?? exit.signal}:\n${tracked.tail()}`);
}

/** User plus system CPU time of a process so far, in seconds (from /proc; clock ticks of 10 ms). */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU seconds a redis-server has used (INFO cpu: user + system). */
export async function redisCpuSeconds(redis: RedisServer): Promise<number> {
  const info = (await redisCommand(redis.port, 'INFO cpu')) ?? '';
  const figure = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
  return figure('used_cpu_user') + figure('used_cpu_sys');
}

/** Resident memory of a process (VmRSS), in bytes. */
export function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
