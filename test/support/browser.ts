// Browser test support: Debian's Chromium through playwright-core, and the service listening on a real port with real
// time.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { buildApp, type App } from '../../src/app.js';
import { systemClock } from '../../src/clock.js';
import { defaultConfig, type Config } from '../../src/config.js';
import { storeOptions } from '../../src/open-store.js';
import { DATABASE_FILE, SqliteStore } from '../../src/store/sqlite.js';
import type { HeartbeatRecord } from '../../src/store/store.js';

export const CHROMIUM_PATH = '/usr/bin/chromium';

/**
 * Why the browser tests cannot run here, or false. Only a developer machine without Chromium skips;
 * in CI (where .ci/run installs it) a missing browser fails the run instead.
 */
export const browserSkip: string | false =
  !existsSync(CHROMIUM_PATH) && !process.env.CI
    ? `${CHROMIUM_PATH} is missing: apt-get install chromium (CI installs it and never skips)`
    : false;

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

const SECRET = 'browser-test-secret-0123456789abcdef0123456789';
const DAY_MS = 86_400_000;

/**
 * Past activity written before the service starts: `days[i]` are the identities active i days before today (all at
 * one instant of that day), `moments` heartbeats at given instants (a day's comings and goings, for the chart of online
 * over time).
 */
export interface History {
  days: readonly (readonly HeartbeatRecord[])[];
  moments?: readonly { atMs: number; beats: readonly HeartbeatRecord[] }[];
}

export interface LiveService {
  app: App;
  url: string;
  config: Readonly<Config>;
  /** Every request the service received: method, path, content type, and the status once answered. */
  requests: { method: string; url: string; contentType: string | undefined; status?: number }[];
  close(): Promise<void>;
}

/**
 * The service on 127.0.0.1 and an ephemeral port, on a fresh SQLite file and the system clock (a browser
 * lives in real time). `history` is written first, day by day; `setup` may add hooks before it listens.
 */
export async function liveService(
  overrides: Partial<Config> = {},
  history?: History,
  setup?: (app: App) => void,
): Promise<LiveService> {
  const dir = mkdtempSync(join(tmpdir(), 'online-stats-browser-'));
  try {
    const config = defaultConfig({ dataDir: dir, logLevel: 'silent', host: '127.0.0.1', port: 0, ...overrides });
    const nowMs = systemClock.nowMs();
    // On each past (UTC) day, 12 hours of the day away from now: no look-back window of whole days
    // (last 1, 7, 30 days) starts or ends near it while a test runs, so counts hold still.
    const pastMs = (daysAgo: number) =>
      Math.floor((nowMs - daysAgo * DAY_MS) / DAY_MS) * DAY_MS + (((nowMs % DAY_MS) + DAY_MS / 2) % DAY_MS);
    const oldest = history ? history.days.length - 1 : 0;
    // Today's history is written just past the heartbeat timeout, so it counts as active today but not online.
    const todayMs = nowMs - config.heartbeatTimeoutMs - 60_000;
    const writes = [...(history?.moments ?? [])];
    for (let daysAgo = oldest; history && daysAgo >= 0; daysAgo--) {
      const beats = history.days[daysAgo] ?? [];
      const atMs = daysAgo === 0 ? todayMs : pastMs(daysAgo);
      if (beats.length > 0 && (daysAgo > 0 || Math.floor(todayMs / DAY_MS) === Math.floor(nowMs / DAY_MS)))
        writes.push({ atMs, beats });
    }
    // The store takes heartbeats in the order of time.
    writes.sort((a, b) => a.atMs - b.atMs);
    const store = SqliteStore.open(
      join(dir, DATABASE_FILE),
      storeOptions(config),
      Math.min(todayMs, pastMs(oldest), writes[0]?.atMs ?? todayMs),
    );
    for (const { atMs, beats } of writes) await store.recordHeartbeats(beats, atMs);
    const app = await buildApp({ config, store, clock: systemClock, identitySecret: SECRET, logger: false });
    const requests: LiveService['requests'] = [];
    const seen = new WeakMap<object, LiveService['requests'][number]>();
    app.addHook('onRequest', async (request) => {
      const entry = { method: request.method, url: request.url, contentType: request.headers['content-type'] };
      seen.set(request, entry);
      requests.push(entry);
    });
    app.addHook('onResponse', async (request, reply) => {
      const entry = seen.get(request);
      if (entry) entry.status = reply.statusCode;
    });
    setup?.(app);
    await app.listen({ host: '127.0.0.1', port: config.port });
    const { port } = app.server.address() as AddressInfo;
    return {
      app,
      config,
      requests,
      url: `http://127.0.0.1:${port}`,
      async close() {
        await app.close();
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/** A plain static server on its own port, so a page there is of another origin than the service. */
export async function pageServer(pages: Record<string, string>): Promise<{ origin: string; close(): Promise<void> }> {
  const server: Server = createServer((request, response) => {
    const page = pages[(request.url ?? '/').split('?')[0] as string];
    if (page === undefined) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(page);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Polls `read` until `accept` holds or `timeoutMs` passes; returns the last value either way. */
export async function until<T>(read: () => Promise<T>, accept: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (accept(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
