// The live stream in a real headless Chromium: EventSource from another origin, several tabs, and a restart.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { browserSkip, launchBrowser, liveService, pageServer, until, type LiveService } from './support/browser.js';

/** A page of another origin that follows the service's /events with the browser's own EventSource. */
const STREAM_PAGE = `<!doctype html>
<title>live</title>
<script>
  const service = new URLSearchParams(location.search).get('service');
  window.counts = [];
  window.opens = 0;
  const source = new EventSource(service + '/events');
  source.onopen = () => window.opens++;
  source.addEventListener('online', (event) => window.counts.push(JSON.parse(event.data).online_clients_count));
</script>`;

interface Seen {
  counts: number[];
  opens: number;
}

const seen = (page: Page): Promise<Seen> =>
  page.evaluate(() => {
    const w = window as unknown as { counts: number[]; opens: number };
    return { counts: [...w.counts], opens: w.opens };
  });

describe('live stream in Chromium', { skip: browserSkip }, () => {
  let browser: Browser;
  let pages: Awaited<ReturnType<typeof pageServer>>;
  let service: LiveService;

  before(async () => {
    pages = await pageServer({ '/': STREAM_PAGE });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await service?.close();
    await pages?.close();
  });

  it(
    'three cross-origin tabs from one address all stream (two got 429, none had CORS), and come back after a restart',
    { timeout: 60_000 },
    async () => {
      // The default read limit (1/s): streams must not spend it, or two of three tabs opened at once are refused.
      const config = { corsOrigins: Object.freeze([pages.origin]) };
      service = await liveService(config);
      const port = Number(new URL(service.url).port);
      const context = await browser.newContext();
      const tabs = await Promise.all(
        [0, 1, 2].map(async () => {
          const page = await context.newPage();
          await page.goto(`${pages.origin}/?service=${encodeURIComponent(service.url)}`);
          return page;
        }),
      );
      for (const tab of tabs) {
        const first = await until(
          () => seen(tab),
          (s) => s.counts.length > 0,
        );
        assert.deepEqual(first.counts, [0], 'each tab got the first event');
      }
      const beat = (target: LiveService, id: string) =>
        target.app.inject({ method: 'POST', url: '/heartbeat', headers: { 'x-client-id': id } });
      await beat(service, 'a');
      for (const tab of tabs) {
        const after = await until(
          () => seen(tab),
          (s) => s.counts.includes(1),
        );
        assert.ok(after.counts.includes(1), `a tab saw ${JSON.stringify(after.counts)}`);
      }

      // A restart on the same port: every EventSource reconnects by itself (retry: 2000) and follows the new service.
      await service.close();
      service = await liveService({ ...config, port });
      await beat(service, 'b');
      await beat(service, 'c');
      for (const tab of tabs) {
        const back = await until(
          () => seen(tab),
          (s) => s.opens >= 2 && s.counts.at(-1) === 2,
          20_000,
        );
        assert.ok(back.opens >= 2, `reconnected (${back.opens} opens)`);
        assert.equal(back.counts.at(-1), 2, `a tab saw ${JSON.stringify(back.counts)}`);
      }
      await context.close();
    },
  );
});
