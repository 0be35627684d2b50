// GET /events: a Server-Sent Events stream of the online count and per-channel counts, live.
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Writable } from 'node:stream';
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AppDeps } from '../http/deps.js';
import { addressBlockIdentity } from '../identity.js';
import { dayAndRecord } from './history.js';
import { ClientIdHeaders } from './schemas.js';

/** How often the figures are read and, when changed, pushed: at most one event a second. */
const POLL_INTERVAL_MS = 1000;
/** A comment line this often keeps proxies from closing a quiet stream. */
const KEEPALIVE_MS = 15_000;
/** Most streams open at once; each costs a socket and a few hundred bytes. */
export const MAX_STREAMS = 10_000;
/**
 * Most streams open at once from one IPv4 address or IPv6 /64: several tabs of several people
 * behind one NAT. Streams have this limit instead of the read rate limit: at 1 read a second, of
 * three tabs opened at once two were refused with a 429, which EventSource never retries.
 */
export const MAX_STREAMS_PER_ADDRESS = 32;
/** Over a limit, the stream is accepted and ended at once with this retry: EventSource comes back then. */
const OVER_LIMIT_RETRY_MS = 30_000;
/**
 * A stream with more than this waiting in the process, unsent, is dropped: its client stopped
 * reading, and the kernel's send buffer (bounded by net.ipv4.tcp_wmem) is full already. At an
 * event a second of a few hundred bytes that is minutes behind; an EventSource reconnects.
 */
export const MAX_BACKLOG_BYTES = 64 * 1024;

/** Writes `text` to every stream, and ends those that do not keep up (which leave `streams`). */
export function broadcast(streams: Set<Writable>, text: string, maxBacklogBytes = MAX_BACKLOG_BYTES): number {
  let dropped = 0;
  for (const stream of streams) {
    stream.write(text);
    if (stream.writableLength > maxBacklogBytes) {
      streams.delete(stream);
      stream.destroy();
      dropped++;
    }
  }
  return dropped;
}

/**
 * One poller per instance reads the store once a second while anyone listens and sends the same
 * event to every stream.
 *
 * Written to the raw response rather than with @fastify/sse: that plugin is built around one
 * producer per reply (send() awaited for backpressure), while this is one event fanned out to up to
 * 10,000 streams, dropping those that fall behind (broadcast()); and at 0.6 it requires Node
 * 20.20.2 or later, where this service supports every Node 20. Reading the store (not this
 * instance's own traffic) is what makes every instance in front of a shared store show the same
 * figures.
 */
export const eventRoutes: FastifyPluginAsyncTypebox<AppDeps> = async (app, deps) => {
  const { store, clock } = deps;
  const streams = new Set<Writable>();
  /** Open streams per address block (its canonical text, held in memory only). */
  const perAddress = new Map<string, number>();
  let last = '';
  let timer: NodeJS.Timeout | null = null;
  let keepalive: NodeJS.Timeout | null = null;

  const snapshot = async (): Promise<string> => {
    const nowMs = clock.nowMs();
    const [online, channels, peaks] = await Promise.all([
      store.countOnline(nowMs),
      store.topChannels(nowMs, 10),
      dayAndRecord(store, deps.calendar, null, nowMs),
    ]);
    // The day's peak is part of the figures: an event is sent when it changes.
    return JSON.stringify({ online_clients_count: online, channels, peak_today: peaks.today });
  };
  const event = (data: string) => {
    const parsed = JSON.parse(data) as Record<string, unknown>;
    return `event: online\ndata: ${JSON.stringify({ ...parsed, at: new Date(clock.nowMs()).toISOString() })}\n\n`;
  };
  const poll = async () => {
    try {
      const data = await snapshot();
      if (data === last) return;
      last = data;
      const text = event(data);
      const dropped = broadcast(streams, text);
      if (dropped > 0) app.log.warn({ dropped }, 'dropped live streams whose clients stopped reading');
      if (streams.size === 0) stopTimers();
    } catch (error) {
      app.log.warn({ err: error }, 'live figures unavailable');
    }
  };
  const stopTimers = () => {
    if (timer) clearInterval(timer);
    if (keepalive) clearInterval(keepalive);
    timer = keepalive = null;
  };

  // preClose, not onClose: the server waits for open connections before onClose runs, and a stream never ends by
  // itself.
  app.addHook('preClose', async () => {
    stopTimers();
    for (const stream of streams) stream.end();
    streams.clear();
  });

  app.get(
    '/events',
    {
      schema: {
        summary: 'Live online count and channel counts (Server-Sent Events)',
        operationId: 'getEvents',
        description:
          'Sends `event: online` with `{"online_clients_count", "channels", "peak_today", "at"}` on connect and whenever ' +
          "the figures change (the day's peak among them), " +
          'at most once a second. With an API token configured, send it in the Authorization header (read the stream with fetch). ' +
          `Streams spend no read budget; at most ${MAX_STREAMS_PER_ADDRESS} are open per address, and past that (or the ` +
          `service's ${MAX_STREAMS}) the stream ends at once with a retry: of ${OVER_LIMIT_RETRY_MS / 1000} s.`,
        tags: ['analytics'],
        headers: ClientIdHeaders,
        response: {
          // The stream is text/event-stream, not JSON; its errors before the stream starts are JSON.
          200: {
            description: 'The event stream',
            content: { 'text/event-stream': { schema: Type.String() } },
          },
          401: Type.Ref('Error'),
          429: Type.Ref('Error'),
          503: Type.Ref('Error'),
        },
      },
      // No read budget: a stream is one request that lasts, limited by how many are open at once.
      config: { auth: 'token' },
    },
    async (request, reply) => {
      // HEAD (which Fastify adds for every GET) asks for the headers only: it must not become a stream.
      if (request.method === 'HEAD') {
        return reply.type('text/event-stream; charset=utf-8').header('cache-control', 'no-cache, no-transform').send();
      }
      const block = addressBlockIdentity(deps.guards.callerOf(request).address);
      const fromBlock = perAddress.get(block) ?? 0;
      const full = streams.size >= MAX_STREAMS || fromBlock >= MAX_STREAMS_PER_ADDRESS;
      const first = full ? '' : await snapshot();
      reply.hijack();
      const stream: ServerResponse = reply.raw;
      // The headers the hooks set (CORS among them) are on the reply; a hijacked answer writes its own.
      const fromHooks: OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) fromHooks[name] = value;
      stream.writeHead(200, {
        ...fromHooks,
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      // Counted when it starts (its duration: until its first event is written), not when it ends
      // (request-metrics.ts leaves streams out), so a scrape sees the streams that are open.
      deps.metrics.request('/events', 'GET', 200, reply.elapsedTime / 1000);
      if (full) {
        const which =
          fromBlock >= MAX_STREAMS_PER_ADDRESS ? `${MAX_STREAMS_PER_ADDRESS} from this address` : MAX_STREAMS;
        stream.end(`: too many live streams are open (${which}); retry later\nretry: ${OVER_LIMIT_RETRY_MS}\n\n`);
        return;
      }
      stream.write(`retry: 2000\n${event(first)}`);
      streams.add(stream);
      perAddress.set(block, fromBlock + 1);
      deps.metrics.liveStreams(streams.size);
      if (streams.size === 1) {
        last = first;
        timer = setInterval(() => void poll(), POLL_INTERVAL_MS);
        keepalive = setInterval(() => {
          broadcast(streams, ': keepalive\n\n');
        }, KEEPALIVE_MS);
      }
      request.raw.once('close', () => {
        streams.delete(stream);
        const left = (perAddress.get(block) ?? 1) - 1;
        if (left > 0) perAddress.set(block, left);
        else perAddress.delete(block);
        deps.metrics.liveStreams(streams.size);
        if (streams.size === 0) stopTimers();
      });
    },
  );
};
