// The client SDK in a real headless Chromium, loaded from the service's /client.js by pages of other origins.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { browserSkip, launchBrowser, liveService, pageServer, until, type LiveService } from './support/browser.js';

/**
 * A page that loads the SDK from the service named in its query string and starts heartbeats; what
 * happened is kept in window.results for the test to read.
 */
const SDK_PAGE = `<!doctype html>
<title>app</title>
<script type="module">
  const query = new URLSearchParams(location.search);
  const service = query.get('service');
  const { createHeartbeat } = await import(service + '/client.js');
  window.results = [];
  window.heartbeat = createHeartbeat({
    url: service,
    channel: query.get('channel') ?? undefined,
    intervalMs: Number(query.get('interval') ?? 60000),
    jitter: 0,
    onResult: (r) => window.results.push(r.kind === 'error' ? { kind: r.kind, status: r.status, nextInMs: r.nextInMs, error: String(r.error) } : { kind: r.kind, status: r.status, nextInMs: r.nextInMs }),
  });
  window.heartbeat.start();
</script>`;

/** A page that only posts a beacon, as any script on any site could. */
const BEACON_PAGE = `<!doctype html>
<title>beacon</title>
<script>
  const query = new URLSearchParams(location.search);
  window.sent = navigator.sendBeacon(query.get('service') + '/heartbeat', JSON.stringify({ client_id: 'beacon-from-anywhere', channel: 'beacon' }));
</script>`;

interface PageResult {
  kind: string;
  status: number | null;
  nextInMs: number;
  error?: string;
}

describe('client SDK in Chromium', { skip: browserSkip }, () => {
  let browser: Browser;
  let allowed: Awaited<ReturnType<typeof pageServer>>;
  let other: Awaited<ReturnType<typeof pageServer>>;
  let service: LiveService;
  const pages = { '/': SDK_PAGE, '/beacon': BEACON_PAGE };

  before(async () => {
    // Two origins besides the service's: one it allows, one it does not.
    allowed = await pageServer(pages);
    other = await pageServer(pages);
    // A beacon may take its time: /leave is held back a little, as a slow network would, to show it cannot outrun a new
    // page.
    service = await liveService(
      { corsOrigins: Object.freeze([allowed.origin]), ingestRateLimit: null, readRateLimit: null },
      undefined,
      (app) => {
        app.addHook('onRequest', async (request) => {
          if (request.url === '/leave') await new Promise((resolve) => setTimeout(resolve, 300));
        });
      },
    );
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await service?.close();
    await allowed?.close();
    await other?.close();
  });

  const online = async (channel: string, from: LiveService = service): Promise<number> => {
    const response = await fetch(`${from.url}/online_clients?channel=${channel}`);
    return ((await response.json()) as { online_clients_count: number }).online_clients_count;
  };
  const open = async (origin: string, query: Record<string, string>): Promise<Page> => {
    const page = await browser.newPage();
    await page.goto(`${origin}/?${new URLSearchParams({ service: service.url, ...query })}`);
    return page;
  };
  const results = (page: Page, count = 1): Promise<PageResult[]> =>
    page
      .waitForFunction((n) => ((window as unknown as { results?: unknown[] }).results?.length ?? 0) >= n, count, {
        timeout: 10_000,
      })
      .then(() => page.evaluate(() => (window as unknown as { results: PageResult[] }).results));

  it('on an allowed origin: counts the page under an id kept in localStorage, the same after a reload, whose leave does not outrun the new page', async () => {
    const page = await open(allowed.origin, { channel: 'reload' });
    try {
      assert.equal((await results(page))[0]?.kind, 'ok');
      const id = await page.evaluate(
        () => (window as unknown as { heartbeat: { clientId: string } }).heartbeat.clientId,
      );
      assert.equal(await page.evaluate(() => localStorage.getItem('online-stats-client-id')), id);
      const seen = service.requests.length;
      await page.reload();
      assert.equal((await results(page))[0]?.kind, 'ok');
      const leaveDone = () =>
        Promise.resolve(service.requests.slice(seen).some((r) => r.url === '/leave' && r.status === 200));
      assert.equal(await until(leaveDone, Boolean, 5000), true, 'the old page left by beacon');
      assert.equal(
        await page.evaluate(() => (window as unknown as { heartbeat: { clientId: string } }).heartbeat.clientId),
        id,
      );
      assert.equal(await online('reload'), 1, 'one browser is one client across reloads');
    } finally {
      await page.close();
    }
  });

  it('leaving the page sends leave by navigator.sendBeacon and the count drops at once', async () => {
    const page = await open(allowed.origin, { channel: 'hide' });
    try {
      assert.equal((await results(page))[0]?.kind, 'ok');
      assert.equal(await online('hide'), 1);
      const seen = service.requests.length;
      // Navigating away hides the page for real: pagehide and visibilitychange fire as when a tab closes.
      await page.goto('about:blank');
      assert.equal(
        await until(
          () => online('hide'),
          (n) => n === 0,
          5000,
        ),
        0,
      );
      const leaves = service.requests
        .slice(seen)
        .filter((r) => r.url === '/leave')
        .map((r) => `${r.method} ${r.contentType}`);
      assert.deepEqual(
        leaves,
        ['POST text/plain;charset=UTF-8'],
        'one beacon (text/plain: no preflight, and it outlives the page)',
      );
    } finally {
      await page.close();
    }
  });

  it('a hidden tab leaves and a shown tab comes back', async () => {
    const page = await open(allowed.origin, { channel: 'tab' });
    try {
      assert.equal((await results(page))[0]?.kind, 'ok');
      // Headless tabs are never hidden, so the page is told it is, as a browser tells a background tab.
      const setVisibility = (state: string) =>
        page.evaluate(`Object.defineProperty(document, 'visibilityState', { configurable: true, value: '${state}' });
          document.dispatchEvent(new Event('visibilitychange'));`);
      await setVisibility('hidden');
      assert.equal(
        await until(
          () => online('tab'),
          (n) => n === 0,
          5000,
        ),
        0,
      );
      await setVisibility('visible');
      assert.equal((await results(page, 2))[1]?.kind, 'ok', 'a heartbeat at once when shown again');
      assert.equal(await online('tab'), 1);
    } finally {
      await page.close();
    }
  });

  it('on an origin the service does not allow, the browser blocks the heartbeat and the service counts nothing', async () => {
    const page = await open(other.origin, { channel: 'blocked' });
    try {
      const [result] = await results(page);
      assert.equal(result?.kind, 'error');
      assert.equal(result?.status, null, 'the browser gave the page no answer to read');
      assert.match(result?.error ?? '', /TypeError/);
      assert.equal(await online('blocked'), 0, 'the preflight failed, so the heartbeat was never sent');
    } finally {
      await page.close();
    }
  });

  it('CORS is not access control: a beacon from an origin the service does not allow still counts', async () => {
    const page = await browser.newPage();
    try {
      await page.goto(`${other.origin}/beacon?${new URLSearchParams({ service: service.url })}`);
      assert.equal(await page.evaluate(() => (window as unknown as { sent: boolean }).sent), true);
      assert.equal(
        await until(
          () => online('beacon'),
          (n) => n === 1,
          5000,
        ),
        1,
      );
    } finally {
      await page.close();
    }
  });

  it('across origins the SDK reads the Retry-After of a 429 and waits exactly that long', async () => {
    const limited = await liveService({
      corsOrigins: Object.freeze([allowed.origin]),
      ingestRateLimit: { count: 1, periodMs: 9000, burst: 1 },
    });
    const page = await browser.newPage();
    try {
      await page.goto(
        `${allowed.origin}/?${new URLSearchParams({ service: limited.url, channel: 'limited', interval: '200' })}`,
      );
      const [first, second] = await results(page, 2);
      assert.deepEqual(first, { kind: 'ok', status: 200, nextInMs: 200 });
      assert.deepEqual(second, { kind: 'rate-limited', status: 429, nextInMs: 9000 });
      assert.equal(await online('limited', limited), 1);
    } finally {
      await page.close();
      await limited.close();
    }
  });
});
