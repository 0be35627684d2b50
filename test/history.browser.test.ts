// The dashboard's chart of online over time and its peak tiles in a real headless Chromium: the figures equal the
// API's, the range picker and a channel click ask for what they show, within the default read budget; and at a phone's
// width no y-axis label is cut.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { HeartbeatRecord } from '../src/store/store.js';
import { browserSkip, launchBrowser, liveService, type LiveService } from './support/browser.js';

interface Peak {
  online: number;
  at: string | null;
}
interface Peaks {
  today: Peak;
  last_24h: Peak;
  all_time: Peak;
}
interface Point {
  start: string;
  max: number;
}

/** The font dashboard.js draws (and measures) axis labels in. */
const AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
/** The y axis's tick and its gap to the labels (dashboard.js: TICK_PX + AXIS_GAP_PX). */
const TICK_AND_GAP_PX = 10;

/** What a chart's box notes about what it shows (data-* attributes). */
const dataOf = (page: Page, id: string) =>
  page.evaluate((boxId) => ({ ...document.getElementById(boxId)?.dataset }), id) as Promise<Record<string, string>>;

/** The highest count of a series and the start of its first point with it. */
function peakOf(points: Point[]): { peak: string; peakAt: string } {
  let best: Point | undefined;
  for (const point of points) if (!best || point.max > best.max) best = point;
  return { peak: String(best?.max ?? 0), peakAt: best?.start ?? '' };
}

describe('dashboard history in Chromium', { skip: browserSkip }, () => {
  let browser: Browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(() => browser?.close());

  let readers = 0;
  const api = async <T>(service: LiveService, path: string): Promise<T> => {
    const response = await fetch(`${service.url}${path}`, { headers: { 'x-client-id': `test-reader-${readers++}` } });
    assert.equal(response.status, 200, `${path}: ${await response.clone().text()}`);
    return (await response.json()) as T;
  };
  const heartbeat = async (service: LiveService, clientId: string, channel: string) => {
    const response = await fetch(`${service.url}/heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: clientId, channel }),
    });
    assert.equal(response.status, 200);
  };
  /** The page's reads of the API (not its own files), in the order the service received them. */
  const reads = (service: LiveService) =>
    service.requests.filter((r) => r.method === 'GET' && /^\/(analytics|events)/.test(r.url)).map((r) => r.url);
  /** The last /analytics/concurrency the page asked for, and the API's answer to the same question. */
  const lastHistoryRead = async (service: LiveService) => {
    const url = reads(service)
      .filter((u) => u.startsWith('/analytics/concurrency'))
      .at(-1);
    assert.ok(url, 'the page read /analytics/concurrency');
    const query = new URL(url, service.url).searchParams;
    return { query, answer: await api<{ points: Point[] }>(service, url) };
  };

  it('shows the peaks and the history the API answers; the range picker and a channel click ask for theirs, within the default read budget', async () => {
    // A fresh install (no history): the daily chart starts today. Reads keep the default budget (1/s per client).
    const service = await liveService({ ingestRateLimit: null });
    const page = await browser.newPage();
    const refused: string[] = [];
    const errors: string[] = [];
    page.on('response', (response) => {
      if (response.status() === 429) refused.push(response.url());
    });
    page.on('pageerror', (error) => errors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text());
    });
    try {
      for (const [id, channel] of [
        ['h-1', 'home'],
        ['h-2', 'home'],
        ['h-3', 'home'],
        ['d-1', 'docs'],
        ['d-2', 'docs'],
      ] as const)
        await heartbeat(service, id, channel);

      await page.goto(service.url);
      await page.waitForSelector('#history[data-points]', { state: 'attached', timeout: 15_000 });
      await page.waitForSelector('#chart[data-days]', { state: 'attached', timeout: 15_000 });
      await page.waitForSelector('#status[data-state="live"]');
      assert.deepEqual(
        reads(service),
        ['/analytics/summary', '/events', '/analytics/concurrency?interval=minute', '/analytics/daily'],
        'a page load reads four times',
      );

      // The tiles: today's peak with its time, the record with its date (the service's time zone is UTC).
      const peaks = await api<Peaks>(service, '/analytics/peaks');
      assert.equal(peaks.today.online, 5);
      const tile = (id: string) =>
        page.evaluate((tileId) => {
          const value = document.getElementById(tileId) as HTMLElement;
          return {
            online: Number(value.dataset.value),
            text: value.textContent,
            at: value.dataset.at,
            when: document.getElementById(`${tileId}-at`)?.textContent,
          };
        }, id);
      const today = await tile('peak-today');
      assert.deepEqual(
        { online: today.online, text: today.text, at: today.at },
        { online: peaks.today.online, text: String(peaks.today.online), at: peaks.today.at },
      );
      assert.equal(today.when, `at ${peaks.today.at?.slice(11, 16)}`);
      const record = await tile('record');
      assert.deepEqual({ online: record.online, at: record.at }, peaks.all_time);
      const recordDay = new Intl.DateTimeFormat('en-US', { dateStyle: 'medium', timeZone: 'UTC' });
      assert.equal(record.when, `on ${recordDay.format(Date.parse(peaks.all_time.at ?? ''))}`);

      // The chart: the last 24 hours by minute, every point the API has, its peak marked.
      let { query, answer } = await lastHistoryRead(service);
      assert.equal(answer.points.length, 1441);
      const { range, interval, channel, points, peak, peakAt } = await dataOf(page, 'history');
      assert.deepEqual(
        { range, interval, channel, points, peak, peakAt },
        {
          range: '24h',
          interval: 'minute',
          channel: '',
          points: String(answer.points.length),
          ...peakOf(answer.points),
        },
      );
      assert.equal(peakOf(answer.points).peak, String(peaks.last_24h.online));

      // A fresh install's daily chart and table start at its first day, not at 29 empty days.
      const daily = await api<{ days: { day: string; dau: number }[] }>(service, '/analytics/daily');
      assert.equal(daily.days.length, 30);
      assert.equal((await dataOf(page, 'chart')).days, '1');
      assert.deepEqual(
        await page.locator('#daily tbody th').allTextContents(),
        [daily.days.at(-1)?.day],
        'only the days since data began',
      );

      // Each range asks for its interval (one read each) and shows what the API answers to that question.
      for (const [range, interval, days] of [
        ['7d', 'hour', 7],
        ['30d', 'hour', 30],
        ['90d', 'day', 90],
        ['24h', 'minute', 1],
      ] as const) {
        const before = reads(service).length;
        await page.click(`.ranges button[data-range="${range}"]`);
        await page.waitForSelector(`#history[data-range="${range}"]`, { state: 'attached', timeout: 10_000 });
        assert.equal(reads(service).length, before + 1, `${range}: one read`);
        ({ query, answer } = await lastHistoryRead(service));
        assert.equal(query.get('interval'), interval);
        assert.equal(query.has('channel'), false);
        if (range === '24h') assert.equal(query.has('from'), false, 'the API default: the last 24 hours');
        else {
          const spanMs = Date.now() - Date.parse(query.get('from') ?? '');
          assert.ok(Math.abs(spanMs - days * 86_400_000) < 60_000, `${range} from ${query.get('from')}`);
        }
        const shown = await dataOf(page, 'history');
        assert.deepEqual(
          { interval: shown.interval, points: shown.points, peak: shown.peak, peakAt: shown.peakAt },
          { interval, points: String(answer.points.length), ...peakOf(answer.points) },
        );
        assert.equal(
          await page.locator(`.ranges button[aria-pressed="true"]`).getAttribute('data-range'),
          range,
          'the picker shows the range chosen',
        );
      }
      assert.ok(Number((await dataOf(page, 'history')).peak) >= 5);

      // A channel's name shows its history (one read, ?channel=), and "Show all channels" the total again.
      const before = reads(service).length;
      await page.click('#channels button[data-channel="home"]');
      await page.waitForSelector('#history[data-channel="home"]', { state: 'attached', timeout: 10_000 });
      assert.equal(reads(service).length, before + 1, 'a channel click: one read');
      ({ query, answer } = await lastHistoryRead(service));
      assert.equal(query.get('channel'), 'home');
      assert.equal(query.get('interval'), 'minute');
      assert.deepEqual(
        { points: (await dataOf(page, 'history')).points, peak: (await dataOf(page, 'history')).peak },
        { points: String(answer.points.length), peak: '3' },
      );
      assert.equal(peakOf(answer.points).peak, '3');
      assert.match((await page.locator('#history-of').textContent()) ?? '', /home/);
      assert.equal(await page.locator('#channels button[data-channel="home"]').getAttribute('aria-pressed'), 'true');
      await page.click('#history-total');
      await page.waitForSelector('#history[data-channel=""]', { state: 'attached', timeout: 10_000 });
      assert.equal(new URL(reads(service).at(-1) ?? '', service.url).searchParams.has('channel'), false);
      assert.equal((await dataOf(page, 'history')).peak, '5');
      assert.equal(await page.locator('#history-total').isHidden(), true);

      assert.deepEqual(refused, [], 'the page stayed within the default read budget');
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
      await service.close();
    }
  });

  it('at 390 px wide, no y-axis label is cut (8,000 was drawn as ",000") and nothing is wider than the screen', async () => {
    // 9,000 active a day, so the daily chart's labels run to 10,000.
    const identity = (n: number) =>
      createHash('sha256').update(`wide-${n}`).digest().subarray(0, 16).toString('latin1');
    const days: HeartbeatRecord[][] = Array.from({ length: 3 }, (_, d) =>
      Array.from({ length: 9000 }, (_, k) => ({ identity: identity(d * 100 + k), channel: null })),
    );
    const service = await liveService({ ingestRateLimit: null, readRateLimit: null }, { days });
    const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
    try {
      await heartbeat(service, 'phone-1', 'home');
      await page.goto(service.url);
      await page.waitForSelector('#history[data-points]', { state: 'attached', timeout: 15_000 });
      await page.waitForSelector('#chart[data-days]', { state: 'attached', timeout: 15_000 });
      for (const id of ['history', 'chart']) {
        const { labels, widths, plotLeftPx } = await page.evaluate(
          ({ boxId, font }) => {
            const box = document.getElementById(boxId) as HTMLElement;
            const labels = JSON.parse(box.dataset.yLabels ?? '[]') as string[];
            const context = document.createElement('canvas').getContext('2d') as CanvasRenderingContext2D;
            context.font = font;
            // uPlot's .u-over covers the plot: it starts where the y axis ends.
            const over = box.querySelector('.u-over') as HTMLElement;
            return {
              labels,
              widths: labels.map((label) => context.measureText(label).width),
              plotLeftPx: over.offsetLeft,
            };
          },
          { boxId: id, font: AXIS_FONT },
        );
        assert.ok(
          labels.some((label) => /^\d{1,2},000$/.test(label) && label !== '0'),
          `${id}: labels of thousands, ${JSON.stringify(labels)}`,
        );
        const widest = Math.max(...widths);
        assert.ok(
          widest + TICK_AND_GAP_PX <= plotLeftPx,
          `${id}: the widest label (${widest.toFixed(1)} px) and the tick fit left of the plot at ${plotLeftPx} px`,
        );
      }
      assert.ok(
        await page.evaluate(() => document.documentElement.scrollWidth <= 390),
        'the page does not scroll sideways',
      );
    } finally {
      await page.close();
      await service.close();
    }
  });
});
