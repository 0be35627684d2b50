// Test helpers: an in-process app on a temp SQLite file with a manual clock, and real server processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import { buildApp, type App, type AppOptions } from '../../src/app.js';
import { ManualClock } from '../../src/clock.js';
import { defaultConfig, type Config } from '../../src/config.js';
import { storeOptions } from '../../src/open-store.js';
import { lockDataDir } from '../../src/lockfile.js';
import { DATABASE_FILE, SqliteStore } from '../../src/store/sqlite.js';

export const SECRET = 'test-secret-0123456789abcdef0123456789abcdef';
export const T0 = Date.UTC(2026, 2, 10, 12, 0, 0);

export function tempDir(prefix = 'online-stats-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export interface TestApp {
  app: App;
  clock: ManualClock;
  config: Readonly<Config>;
  dataDir: string;
  close(): Promise<void>;
}

export interface TestAppOptions {
  /** Fastify's logger option (default: none). */
  logger?: AppOptions['logger'];
  /** Called before the app is ready, to add a hook. */
  prepare?(app: App): void;
}

/** Whether no process holds the data directory's lock (it is taken and given back at once to find out). */
export function lockIsFree(dataDir: string): boolean {
  try {
    lockDataDir(dataDir)();
    return true;
  } catch {
    return false;
  }
}

/** An app on a fresh SQLite file, driven by app.inject() and a manual clock. */
export async function testApp(overrides: Partial<Config> = {}, options: TestAppOptions = {}): Promise<TestApp> {
  const dir = tempDir();
  const clock = new ManualClock(T0);
  const config = defaultConfig({ dataDir: dir.path, logLevel: 'silent', ...overrides });
  const store = SqliteStore.open(join(dir.path, DATABASE_FILE), storeOptions(config), clock.nowMs());
  const app = await buildApp({ config, store, clock, identitySecret: SECRET, logger: options.logger ?? false });
  options.prepare?.(app);
  await app.ready();
  return {
    app,
    clock,
    config,
    dataDir: dir.path,
    async close() {
      await app.close();
      await store.close();
      dir.remove();
    },
  };
}

const CLI = fileURLToPath(new URL('../../dist/src/cli.js', import.meta.url));

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  /** Resolves with the exit code (or signal name) when the process ends. */
  exited: Promise<number | string>;
  stderr(): string;
  /** The log (pino writes to stdout). */
  stdout(): string;
}

/** Starts the built CLI (`npm run build` first) on a free port; resolves once it listens. */
export async function startServer(args: readonly string[], env: Record<string, string> = {}): Promise<ServerProcess> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--host', '127.0.0.1', ...args], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return untilListening(child);
}

/**
 * Follows a process that serves on 127.0.0.1 and logs like `serve` (Fastify's "Server listening at" on stdout),
 * spawned with stdout and stderr piped: resolves once it listens.
 */
export async function untilListening(child: ChildProcess): Promise<ServerProcess> {
  let stderr = '';
  let stdout = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  if (!child.stdout) throw new Error('untilListening needs a piped stdout');
  const output = child.stdout;
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: output });
    const timer = setTimeout(() => reject(new Error(`server did not start in 20 s: ${stderr}`)), 20_000);
    lines.on('line', (line) => {
      stdout += `${line}\n`;
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(match[1] as string);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before listening: ${stderr}`));
    });
  });
  return { child, url, exited, stderr: () => stderr, stdout: () => stdout };
}

/** Runs the built CLI to completion. */
export function runCli(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** The identities of the database (read after the service is gone). */
export function storedIdentities(dataDir: string): Set<string> {
  const db = new Database(join(dataDir, DATABASE_FILE), { readonly: true });
  try {
    return new Set(
      db
        .prepare<[], Buffer>('SELECT id FROM identities')
        .pluck()
        .all()
        .map((id) => id.toString('latin1')),
    );
  } finally {
    db.close();
  }
}
