// The live stream: /events pushes the online count when it changes, needs the token when one is set, and ends on
// shutdown.
import assert from 'node:assert/strict';
import { request, type IncomingMessage } from 'node:http';
import { describe, it } from 'node:test';
import { PassThrough, Writable } from 'node:stream';
import { broadcast, MAX_BACKLOG_BYTES, MAX_STREAMS_PER_ADDRESS } from '../src/routes/events.js';
import { testApp } from './support/app.js';

interface LiveEvent {
  online_clients_count: number;
  channels: { channel: string; online: number }[];
  peak_today: { online: number; at: string | null } | null;
  at: string;
}

/** Reads `event: online` messages from an SSE response body. */
async function* events(body: ReadableStream<Uint8Array>): AsyncGenerator<LiveEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const message = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = message.split('\n').find((line) => line.startsWith('data: '));
      if (message.includes('event: online') && data) yield JSON.parse(data.slice(6)) as LiveEvent;
    }
  }
}

describe('live events', () => {
  it('kept writing to clients that stopped reading (210 MB in 40 s): one that falls behind is dropped', () => {
    // Each stands for a response whose kernel send buffer is full: what is written stays in the process.
    const reading = new Writable({ write: (_chunk, _encoding, done) => done() });
    const stalled = new PassThrough({ highWaterMark: 1024 });
    const streams = new Set([reading, stalled]);
    const event = `event: online\ndata: ${'x'.repeat(500)}\n\n`;
    let dropped = 0;
    let written = 0;
    while (written < 4 * MAX_BACKLOG_BYTES) {
      dropped += broadcast(streams, event);
      written += event.length;
    }
    assert.equal(dropped, 1);
    assert.ok(stalled.destroyed, 'the stalled stream is ended');
    assert.ok(!streams.has(stalled));
    assert.ok(streams.has(reading) && !reading.destroyed, 'a client that reads keeps its stream');
    assert.ok(stalled.writableLength <= MAX_BACKLOG_BYTES + event.length, 'no more than the bound was held for it');
  });

  it('HEAD /events answers with the stream headers and ends, holding no stream open', { timeout: 10_000 }, async () => {
    const t = await testApp({ ingestRateLimit: null, readRateLimit: null });
    try {
      const url = new URL(await t.app.listen({ port: 0, host: '127.0.0.1' }));
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        const req = request({
          host: url.hostname,
          port: url.port,
          path: '/events',
          method: 'HEAD',
          headers: { connection: 'close' },
        });
        req.on('response', resolve).on('error', reject).end();
      });
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /text\/event-stream/);
      res.resume();
      // A HEAD that took a stream slot never ended its response, so its connection stayed open.
      const connections = () => new Promise<number>((resolve) => t.app.server.getConnections((_, n) => resolve(n)));
      const deadline = Date.now() + 3000;
      while ((await connections()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(await connections(), 0, 'the HEAD request left its connection open');
    } finally {
      await t.close();
    }
  });

  it('pushes the count on connect and again after heartbeats, at most once a second', { timeout: 30_000 }, async () => {
    const t = await testApp({ ingestRateLimit: null, readRateLimit: null, apiToken: 'tok' });
    try {
      const url = await t.app.listen({ port: 0, host: '127.0.0.1' });
      assert.equal((await fetch(`${url}/events`)).status, 401, 'the token is required');
      const controller = new AbortController();
      const res = await fetch(`${url}/events`, { headers: { authorization: 'Bearer tok' }, signal: controller.signal });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
      const stream = events(res.body!);
      const first = (await stream.next()).value as LiveEvent;
      assert.equal(first.online_clients_count, 0);
      assert.deepEqual(first.peak_today, { online: 0, at: null });
      await t.app.inject({
        method: 'POST',
        url: '/heartbeat',
        headers: { 'x-client-id': 'a' },
        payload: { channel: 'lobby' },
      });
      await t.app.inject({ method: 'POST', url: '/heartbeat', headers: { 'x-client-id': 'b' } });
      const sentMs = Date.now();
      const second = (await stream.next()).value as LiveEvent;
      assert.ok(Date.now() - sentMs < 2500, 'the change arrives within the next poll');
      assert.equal(second.online_clients_count, 2);
      assert.deepEqual(second.channels, [{ channel: 'lobby', online: 1 }]);
      // The day's peak rides along, and changes with it.
      assert.deepEqual(second.peak_today, { online: 2, at: new Date(t.clock.nowMs()).toISOString() });
      await t.app.inject({ method: 'POST', url: '/heartbeat', headers: { 'x-client-id': 'c' } });
      const third = (await stream.next()).value as LiveEvent;
      assert.equal(third.online_clients_count, 3);
      assert.equal(third.peak_today?.online, 3);
      assert.ok(Date.parse(third.at) - Date.parse(second.at) >= 0, 'events are in order');
      // Closing the app ends open streams instead of waiting for them forever.
      const closing = t.app.close();
      const end = await stream.next();
      assert.equal(end.done, true);
      await closing;
      controller.abort();
    } finally {
      await t.close();
    }
  });

  it(
    'gave two of three tabs a 429 and had no CORS header: now every tab streams, and over the limit it says retry',
    {
      timeout: 30_000,
    },
    async () => {
      // The default read limit (1/s) on purpose: streams must not spend it.
      const t = await testApp({ corsOrigins: Object.freeze(['https://app.example']) });
      const controllers: AbortController[] = [];
      try {
        const url = await t.app.listen({ port: 0, host: '127.0.0.1' });
        const open = async () => {
          const controller = new AbortController();
          controllers.push(controller);
          return fetch(`${url}/events`, { headers: { origin: 'https://app.example' }, signal: controller.signal });
        };
        const tabs = await Promise.all([open(), open(), open()]);
        for (const tab of tabs) {
          assert.equal(tab.status, 200);
          assert.equal(tab.headers.get('access-control-allow-origin'), 'https://app.example');
          const first = (await events(tab.body!).next()).value as LiveEvent;
          assert.equal(first.online_clients_count, 0);
        }
        for (let n = 3; n < MAX_STREAMS_PER_ADDRESS; n++) assert.equal((await open()).status, 200);
        const over = await open();
        assert.equal(over.status, 200, 'a browser gives up on a 429 or 503 for good');
        const text = await over.text();
        assert.match(text, /retry: 30000/);
        assert.doesNotMatch(text, /event: online/);
        // Streams were missing from the request metrics (a hijacked reply skips onResponse).
        const metrics = (await t.app.inject({ url: '/metrics' })).body;
        const opened = MAX_STREAMS_PER_ADDRESS + 1;
        assert.match(
          metrics,
          new RegExp(`online_stats_http_requests_total\\{[^}]*route="/events"[^}]*\\} ${opened}\\b`),
        );
        assert.match(metrics, new RegExp(`online_stats_live_streams ${MAX_STREAMS_PER_ADDRESS}\\b`));
      } finally {
        for (const controller of controllers) controller.abort();
        await t.close();
      }
    },
  );
});
