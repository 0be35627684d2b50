// The dashboard in a real headless Chromium against the real service: figures match the API, the live count follows
// heartbeats.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import type { Browser, Page } from 'playwright-core';
import type { HeartbeatRecord } from '../src/store/store.js';
import { browserSkip, launchBrowser, liveService, type LiveService } from './support/browser.js';

const TOKEN = 'dashboard-test-token-4f9c2a';
const identity = (n: number): string =>
  createHash('sha256').update(`seeded-${n}`).digest().subarray(0, 16).toString('latin1');

/**
 * 40 days of history: day i has 5 + (i × 7 mod 23) identities from 9i on, overlapping the next days', so days and
 * windows differ.
 */
function history(): { days: HeartbeatRecord[][] } {
  const days: HeartbeatRecord[][] = [];
  for (let daysAgo = 0; daysAgo < 40; daysAgo++) {
    const count = 5 + ((daysAgo * 7) % 23);
    days.push(Array.from({ length: count }, (_, k) => ({ identity: identity(daysAgo * 9 + k), channel: null })));
  }
  return { days };
}

interface Shown {
  online: number;
  active: Record<'1' | '7' | '30', number>;
  channels: { channel: string; online: number }[];
  days: { day: string; dau: number; wau: number; mau: number; new: number }[];
}

/**
 * What the page shows, read from the elements a person sees (their data-value mirrors the text). Plain
 * JavaScript text: the test's own code is transformed (tsx adds helpers) and would not run in the page.
 */
const READ_PAGE = `(() => {
  const value = (id) => {
    const element = document.getElementById(id);
    const raw = element.dataset.value ?? '';
    // The visible text is the same number, formatted for the reader's locale.
    if (element.textContent !== new Intl.NumberFormat().format(Number(raw))) throw new Error('#' + id + ' shows ' + element.textContent + ' but holds ' + raw);
    return Number(raw);
  };
  return {
    online: value('online'),
    active: { '1': value('active-1'), '7': value('active-7'), '30': value('active-30') },
    channels: Array.from(document.querySelectorAll('#channels li'), (li) => ({ channel: li.querySelector('.name').textContent, online: Number(li.dataset.online) })),
    days: Array.from(document.querySelectorAll('#daily tbody tr'), (row) => ({
      day: row.querySelector('th').textContent,
      dau: Number(row.dataset.dau),
      wau: Number(row.dataset.wau),
      mau: Number(row.dataset.mau),
      new: Number(row.dataset.new),
    })),
  };
})()`;

const readPage = (page: Page): Promise<Shown> => page.evaluate<Shown>(READ_PAGE);

describe('dashboard in Chromium', { skip: browserSkip }, () => {
  let browser: Browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(() => browser?.close());

  let readers = 0;
  /** Reads the API as its own client (its own read budget), with the token when given. */
  const api = async <T>(service: LiveService, path: string, token?: string): Promise<T> => {
    const headers: Record<string, string> = { 'x-client-id': `test-reader-${readers++}` };
    if (token) headers.authorization = `Bearer ${token}`;
    const response = await fetch(`${service.url}${path}`, { headers });
    assert.equal(response.status, 200, `${path}: ${await response.clone().text()}`);
    return (await response.json()) as T;
  };
  const ingest = async (service: LiveService, path: '/heartbeat' | '/leave', clientId: string, channel?: string) => {
    const response = await fetch(`${service.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(channel ? { client_id: clientId, channel } : { client_id: clientId }),
    });
    assert.equal(response.status, 200);
  };
  const apiView = async (service: LiveService, token?: string): Promise<Shown> => {
    type Summary = { online_clients_count: number; active: Shown['active']; top_channels: Shown['channels'] };
    const summary = await api<Summary>(service, '/analytics/summary', token);
    const daily = await api<{ days: Shown['days'] }>(service, '/analytics/daily', token);
    return {
      online: summary.online_clients_count,
      active: summary.active,
      channels: summary.top_channels,
      days: daily.days.map(({ day, dau, wau, mau, new: fresh }) => ({ day, dau, wau, mau, new: fresh })).reverse(),
    };
  };
  const waitForOnline = (page: Page, count: number) =>
    page.waitForFunction((n) => document.getElementById('online')?.dataset.value === String(n), count, {
      timeout: 10_000,
    });

  it('shows what the API answers, then follows heartbeats live without reloading, within the default read budget', async () => {
    // Reads keep the default budget (1/s per client): the page must pace itself and never be refused.
    const service = await liveService({ ingestRateLimit: null }, history());
    const page = await browser.newPage();
    const refused: string[] = [];
    const foreign: string[] = [];
    const errors: string[] = [];
    page.on('response', (response) => {
      if (response.status() === 429) refused.push(response.url());
    });
    page.on('request', (request) => {
      if (!request.url().startsWith(`${service.url}/`)) foreign.push(request.url());
    });
    page.on('pageerror', (error) => errors.push(error.message));
    try {
      await ingest(service, '/heartbeat', 'live-1', 'home');
      await ingest(service, '/heartbeat', 'live-2', 'home');
      await ingest(service, '/heartbeat', 'live-3', 'docs');

      await page.goto(service.url);
      await page.waitForSelector('#status[data-state="live"]', { timeout: 15_000 });
      await page.waitForSelector('#daily tbody tr', { state: 'attached' });
      const shown = await readPage(page);
      const answered = await apiView(service);
      assert.deepEqual(shown, answered);
      assert.equal(shown.online, 3);
      assert.deepEqual(shown.channels, [
        { channel: 'home', online: 2 },
        { channel: 'docs', online: 1 },
      ]);
      assert.equal(shown.days.length, 30);
      assert.ok(
        shown.active['30'] > shown.active['7'] && shown.active['7'] > shown.active['1'],
        `seeded history shows: ${JSON.stringify(shown.active)}`,
      );
      await page.waitForSelector('#chart[data-days="30"] canvas', { state: 'attached' });

      await page.evaluate(() => Object.assign(window, { loadedOnce: true }));
      await ingest(service, '/heartbeat', 'live-4', 'pricing');
      await ingest(service, '/heartbeat', 'live-5', 'docs');
      const grown = (await api<{ online_clients_count: number }>(service, '/online_clients')).online_clients_count;
      assert.equal(grown, 5);
      await waitForOnline(page, grown);
      await ingest(service, '/leave', 'live-1');
      await waitForOnline(page, 4);
      await page.waitForFunction(() => document.querySelector('#channels li[data-channel="pricing"]') !== null);

      // After the change the page re-reads the summary too, so every figure agrees with the API again.
      const settled = await apiView(service);
      await page.waitForFunction(
        (want) => document.getElementById('active-1')?.dataset.value === String(want),
        settled.active['1'],
        { timeout: 15_000 },
      );
      assert.deepEqual({ ...(await readPage(page)), days: [] }, { ...settled, days: [] });
      assert.equal(
        await page.evaluate(() => (window as unknown as { loadedOnce?: boolean }).loadedOnce),
        true,
        'the page was not reloaded',
      );

      assert.deepEqual(refused, [], 'the page stayed within the read budget');
      assert.deepEqual(foreign, [], 'the page loads nothing from elsewhere');
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
      await service.close();
    }
  });

  it('when the live stream fails or ends, the page says so, reconnects and is live again', async () => {
    const service = await liveService({ ingestRateLimit: null, readRateLimit: null });
    const page = await browser.newPage();
    try {
      await ingest(service, '/heartbeat', 'steady-1');
      // The first stream is refused, the second ends after one event; the third is the service's own.
      let attempts = 0;
      await page.route('**/events', async (route) => {
        attempts += 1;
        if (attempts === 1)
          return route.fulfill({ status: 503, contentType: 'application/json', body: '{"statusCode":503}' });
        if (attempts === 2) {
          const body =
            'retry: 300\n: a comment\nevent: online\ndata: {"online_clients_count":42,\ndata: "channels":[{"channel":"split","online":42}]}\n\n';
          return route.fulfill({ status: 200, contentType: 'text/event-stream', body });
        }
        return route.continue();
      });
      await page.addInitScript(`window.states = [];
        addEventListener('DOMContentLoaded', () => {
          const status = document.getElementById('status');
          new MutationObserver(() => window.states.at(-1) === status.dataset.state || window.states.push(status.dataset.state))
            .observe(status, { attributes: true });
        });`);
      await page.goto(service.url);
      await waitForOnline(page, 42);
      assert.equal(
        await page.locator('#channels li[data-channel="split"]').count(),
        1,
        'a data field split over two lines is one event',
      );
      await waitForOnline(page, 1);
      await page.waitForSelector('#status[data-state="live"]');
      assert.equal(attempts, 3);
      const states = await page.evaluate<string[]>('window.states');
      assert.deepEqual(states.slice(states.indexOf('reconnecting')), ['reconnecting', 'live', 'reconnecting', 'live']);
      await ingest(service, '/heartbeat', 'steady-2');
      await waitForOnline(page, 2);
    } finally {
      await page.close();
      await service.close();
    }
  });

  it('with an API token: asks for it (and says when it is refused), or takes it from #token=, keeps it in sessionStorage, and goes live', async () => {
    const service = await liveService({ apiToken: TOKEN, ingestRateLimit: null, readRateLimit: null }, history());
    const context = await browser.newContext();
    try {
      const unauthorized = await fetch(`${service.url}/analytics/summary`);
      assert.equal(unauthorized.status, 401, 'the reads really are protected');
      await ingest(service, '/heartbeat', 'tok-1', 'home');

      const page = await context.newPage();
      await page.goto(service.url);
      await page.waitForSelector('#token-form:not([hidden])');
      assert.equal(await page.locator('#figures').isHidden(), true, 'no figures without the token');
      await page.fill('#token-input', 'wrong-token');
      await page.click('#token-form button');
      await page.waitForFunction(() => /refused/.test(document.getElementById('token-message')?.textContent ?? ''));
      assert.equal(await page.locator('#token-form').isVisible(), true);

      await page.fill('#token-input', TOKEN);
      await page.click('#token-form button');
      await page.waitForSelector('#status[data-state="live"]', { timeout: 15_000 });
      await page.waitForSelector('#daily tbody tr', { state: 'attached' });
      assert.deepEqual(await readPage(page), await apiView(service, TOKEN));
      assert.equal(await page.evaluate(() => sessionStorage.getItem('online-stats-token')), TOKEN);

      await ingest(service, '/heartbeat', 'tok-2', 'home');
      await waitForOnline(page, 2);
      await page.reload();
      await page.waitForSelector('#status[data-state="live"]', { timeout: 15_000 });
      assert.equal(await page.locator('#token-form').isHidden(), true, 'the tab remembers the token');

      // A link with the token in its fragment (never sent to the server) needs no typing, and the fragment is cleared.
      const linked = await (await browser.newContext()).newPage();
      try {
        await linked.goto(`${service.url}/#token=${encodeURIComponent(TOKEN)}`);
        await linked.waitForSelector('#status[data-state="live"]', { timeout: 15_000 });
        assert.equal(await linked.evaluate(() => location.hash), '');
        assert.equal(await linked.evaluate(() => sessionStorage.getItem('online-stats-token')), TOKEN);
        await linked.waitForSelector('#daily tbody tr', { state: 'attached' });
        assert.deepEqual(await readPage(linked), await apiView(service, TOKEN));
        await ingest(service, '/heartbeat', 'tok-3', 'docs');
        await waitForOnline(linked, 3);
        await waitForOnline(page, 3);
      } finally {
        await linked.context().close();
      }
    } finally {
      await context.close();
      await service.close();
    }
  });
});

describe('dashboard assets over HTTP', () => {
  let service: LiveService;
  before(async () => {
    service = await liveService();
  });
  after(() => service.close());

  it('serves the page and its hashed assets (uPlot among them) with content types, cache headers and a strict CSP; small, and nothing from elsewhere', async () => {
    const page = await fetch(`${service.url}/`);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(page.headers.get('cache-control'), 'no-cache');
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'; script-src 'self'/);
    const html = await page.text();
    assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, 'no asset from another host');
    const urls = [...html.matchAll(/(?:src|href)="(\/dashboard\/[^"]+)"/g)].map((m) => m[1] as string);
    assert.deepEqual(
      new Set(urls.map((u) => u.replace(/\?v=[\w-]+$/, ''))),
      new Set([
        '/dashboard/favicon.svg',
        '/dashboard/dashboard.css',
        '/dashboard/dashboard.js',
        '/dashboard/uplot.min.css',
        '/dashboard/uplot.min.js',
      ]),
    );
    // What a first visit downloads, gzipped (README: about 38 KB, 23 of them uPlot's).
    let gzipped = gzipSync(html).length;
    for (const url of new Set(urls)) {
      assert.match(url, /\?v=[\w-]{16}$/, 'asset URLs carry their content hash');
      const response = await fetch(`${service.url}${url}`);
      assert.equal(response.status, 200, url);
      assert.equal(response.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      assert.match(response.headers.get('content-type') ?? '', /^(text\/css|text\/javascript|image\/svg\+xml)/);
      const body = await response.text();
      // A comment loads nothing: uPlot's names its home page.
      const code = body.replace(/\/\*[\s\S]*?\*\//g, '');
      assert.doesNotMatch(code, /https?:\/\/(?!www\.w3\.org\/2000\/svg)/, `${url} refers to no other host`);
      gzipped += gzipSync(body).length;
      const revalidated = await fetch(`${service.url}${url}`, {
        headers: { 'if-none-match': response.headers.get('etag') ?? '' },
      });
      assert.equal(revalidated.status, 304);
    }
    assert.ok(gzipped < 45_000, `the page and its assets are ${gzipped} bytes gzipped`);
    const stale = await fetch(`${service.url}/dashboard/dashboard.js?v=old`);
    assert.equal(stale.headers.get('cache-control'), 'no-cache', 'an old hash is not cached for a year');
    assert.equal((await fetch(`${service.url}/dashboard/nothing.js`)).status, 404);
    assert.equal((await fetch(`${service.url}/dashboard/..%2Fapp.ts`)).status, 404);
  });

  it('serves the SDK at /client.js to any origin, and keeps these routes out of the OpenAPI document', async () => {
    const client = await fetch(`${service.url}/client.js`, { headers: { origin: 'https://elsewhere.example' } });
    assert.equal(client.status, 200);
    assert.equal(client.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(client.headers.get('access-control-allow-origin'), '*');
    const code = await client.text();
    assert.match(code, /export function createHeartbeat/);
    assert.doesNotMatch(code, /^\s*import\s/m, 'the browser build stands alone');
    const openapi = (await (await fetch(`${service.url}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    for (const path of ['/', '/dashboard/{name}', '/client.js']) assert.equal(openapi.paths[path], undefined, path);
  });
});
