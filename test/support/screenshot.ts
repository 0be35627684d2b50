// Makes docs/dashboard.png: the dashboard in Chromium over 60 days of made-up activity, the last two of them minute by
// minute, and a few live clients.
// Run: npm run build && node --import tsx test/support/screenshot.ts [docs/dashboard.png]
import { createHash } from 'node:crypto';
import type { HeartbeatRecord } from '../../src/store/store.js';
import { launchBrowser, liveService } from './browser.js';

const identity = (n: number): string =>
  createHash('sha256').update(`user-${n}`).digest().subarray(0, 16).toString('latin1');

let seed = 7;
const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
const MINUTE_MS = 60_000;

/**
 * 60 days (the chart shows the last 30) of a small app growing slowly, quieter at weekends; the same people come back
 * on most days. The last two days come from moments() instead.
 */
function history(): HeartbeatRecord[][] {
  const days: HeartbeatRecord[][] = [[], []];
  for (let daysAgo = 2; daysAgo < 60; daysAgo++) {
    const weekday = new Date(Date.now() - daysAgo * 86_400_000).getUTCDay();
    const weekend = weekday === 0 || weekday === 6;
    const pool = 900 - daysAgo * 6;
    const share = (weekend ? 0.17 : 0.27) * (0.9 + 0.2 * random());
    const beats: HeartbeatRecord[] = [];
    for (let n = 0; n < pool; n++) {
      // Low numbers are the regulars, high numbers drop by now and then.
      if (random() < share * (n < pool / 4 ? 2.2 : 0.6)) beats.push({ identity: identity(n), channel: null });
    }
    days.push(beats);
  }
  return days;
}

/**
 * The last 48 hours (until a minute ago: some are still online) in steps of 5 minutes, within the 10-minute
 * heartbeat timeout: busy in the afternoon (UTC), quiet at night, people coming and going in turn.
 */
function moments(): { atMs: number; beats: HeartbeatRecord[] }[] {
  const nowMs = Date.now();
  const endMs = nowMs - MINUTE_MS;
  const list: { atMs: number; beats: HeartbeatRecord[] }[] = [];
  for (let atMs = Math.floor((nowMs - 48 * 60 * MINUTE_MS) / (5 * MINUTE_MS)) * 5 * MINUTE_MS; atMs < endMs;) {
    const hour = (atMs % 86_400_000) / 3_600_000;
    const weekday = new Date(atMs).getUTCDay();
    const level = (8 + 52 * (0.5 - 0.5 * Math.cos((2 * Math.PI * (hour - 4)) / 24))) * (weekday % 6 === 0 ? 0.7 : 1);
    const online = Math.round(level * (0.85 + 0.3 * random()));
    // Everyone stays about an hour and a half: the window of identities moves on by one every 7 minutes.
    const first = Math.floor((atMs - nowMs) / (7 * MINUTE_MS)) + 1000;
    list.push({
      atMs,
      beats: Array.from({ length: online }, (_, k) => ({ identity: identity(first + k), channel: null })),
    });
    atMs += 5 * MINUTE_MS;
  }
  return list;
}

const out = process.argv[2] ?? 'docs/dashboard.png';
const service = await liveService(
  { ingestRateLimit: null, readRateLimit: null },
  { days: history(), moments: moments() },
);
const browser = await launchBrowser();
try {
  const channels = ['home', 'home', 'home', 'docs', 'docs', 'pricing', 'blog', 'checkout', 'settings'];
  for (let n = 0; n < 47; n++) {
    const response = await fetch(`${service.url}/heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: `visitor-${n}`, channel: channels[(n * 7) % channels.length] }),
    });
    if (!response.ok) throw new Error(`heartbeat: ${response.status}`);
  }
  const page = await browser.newPage({
    viewport: { width: 1100, height: 900 },
    deviceScaleFactor: 1,
    colorScheme: 'light',
  });
  await page.goto(service.url);
  await page.waitForSelector('#status[data-state="live"]');
  await page.waitForSelector('#history[data-points] canvas', { state: 'attached' });
  await page.waitForSelector('#chart[data-days] canvas', { state: 'attached' });
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await service.close();
}
