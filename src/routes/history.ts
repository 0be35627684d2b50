// How many were online over time: /analytics/concurrency (per minute, hour or day) and /analytics/peaks.
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Calendar } from '../calendar.js';
import { serviceError } from '../errors.js';
import type { AppDeps } from '../http/deps.js';
import type { ConcurrencyInterval, ConcurrencyPeak, Store } from '../store/store.js';
import { CSV_TYPE, FormatQuery, jsonOrCsv, toCsv, wantsCsv } from './csv.js';
import { pointsJson, roundedMean } from './points-json.js';
import { ClientIdHeaders, errorResponses } from './schemas.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;
/** Most points in one answer of /analytics/concurrency. */
export const MAX_POINTS = 1500;
/** How often the store is asked to complete and save the minutes that ended. */
const SETTLE_INTERVAL_MS = 1000;

const INTERVALS = ['minute', 'hour', 'day'] as const;
const UNIT_MS: Record<Exclude<ConcurrencyInterval, 'day'>, number> = { minute: MINUTE_MS, hour: HOUR_MS };

const Instant = Type.String({
  description: 'An ISO 8601 date and time (2026-12-02T17:00:00Z), or a date (2026-12-02, midnight UTC)',
});

const Point = Type.Object(
  {
    start: Type.String({ description: 'The start of the interval, ISO 8601 UTC' }),
    max: Type.Integer({ description: 'The highest online count during the interval (exact)' }),
    min: Type.Integer({ description: 'The lowest online count during the interval (exact)' }),
    mean: Type.Number({ description: 'The time-weighted mean online count' }),
  },
  { $id: 'ConcurrencyPoint' },
);

export const Peak = Type.Object(
  {
    online: Type.Integer({ description: 'The highest online count' }),
    at: Type.Union([Type.String(), Type.Null()], {
      description: 'When it was first reached (ISO 8601 UTC); null: never',
    }),
  },
  { $id: 'Peak' },
);

export interface PeakAnswer {
  online: number;
  at: string | null;
}
const answerOf = (peak: ConcurrencyPeak): PeakAnswer => ({
  online: peak.online,
  at: peak.atMs === null ? null : new Date(peak.atMs).toISOString(),
});

/** Today's peak (in the calendar's time zone) and the all-time one. */
export async function dayAndRecord(
  store: Store,
  calendar: Calendar,
  channel: string | null,
  nowMs: number,
): Promise<{ today: PeakAnswer; all_time: PeakAnswer }> {
  const [today, allTime] = await Promise.all([
    store.peak(channel, calendar.dayOf(nowMs).startMs, nowMs),
    store.peak(channel, null, nowMs),
  ]);
  return { today: answerOf(today), all_time: answerOf(allTime) };
}

/**
 * ISO 8601 of whole minutes, made from each hour's text once: 1,441 `toISOString()` calls were most of the time of a
 * 24-hour answer.
 */
function minuteIsoFormatter(): (ms: number) => string {
  let hourMs = Number.NaN;
  let prefix = '';
  return (ms) => {
    if (ms % MINUTE_MS !== 0) return new Date(ms).toISOString();
    const hour = ms - (((ms % HOUR_MS) + HOUR_MS) % HOUR_MS);
    if (hour !== hourMs) {
      hourMs = hour;
      prefix = new Date(hour).toISOString().slice(0, 14);
    }
    const minute = (ms - hour) / MINUTE_MS;
    return `${prefix}${minute < 10 ? '0' : ''}${minute}:00.000Z`;
  };
}

/** An instant of the query, or a 400 naming the parameter. */
function instantOf(name: 'from' | 'to', text: string): number {
  const ms = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(ms))
    throw serviceError(
      'INVALID_DATE_RANGE',
      `${name}: ${JSON.stringify(text)} is not an ISO 8601 date or date and time`,
    );
  return ms;
}

/** How many points a range needs at an interval. */
function pointsNeeded(interval: ConcurrencyInterval, fromMs: number, toMs: number, calendar: Calendar): number {
  if (interval === 'day')
    return calendar.daysBetween(calendar.dayOf(fromMs).key, calendar.dayOf(Math.max(fromMs, toMs - 1)).key).length;
  const unitMs = UNIT_MS[interval];
  return Math.ceil((toMs - Math.floor(fromMs / unitMs) * unitMs) / unitMs);
}

export const historyRoutes: FastifyPluginAsyncTypebox<AppDeps> = async (app, deps) => {
  const { store, clock, calendar, config } = deps;
  const readErrors = { 401: Type.Ref('Error'), ...errorResponses };

  // Counts fall as identities time out, with no heartbeat to say so: the store completes and saves each minute soon
  // after it ends.
  const settler = setInterval(() => {
    store.settle(clock.nowMs()).catch((error: unknown) => app.log.warn({ err: error }, 'history not saved'));
  }, SETTLE_INTERVAL_MS);
  settler.unref();
  app.addHook('onClose', async () => clearInterval(settler));

  app.get(
    '/analytics/concurrency',
    {
      schema: {
        summary: 'How many were online over time: the highest, lowest and mean count per minute, hour or day',
        operationId: 'getConcurrency',
        description:
          'Each point covers one interval from its start: max and min are exact (every rise and fall of the count, ' +
          'timeouts included, is taken at its instant), mean is weighted by time. Minutes are kept for ' +
          `${config.historyMinuteDays} days, hours for ${config.maxDays}; days follow the configured time zone ` +
          `(${config.timeZone}). Default: the last 24 hours by minute. At most ${MAX_POINTS} points per answer. ` +
          'An unknown channel answers points of zeros. `Accept: text/csv` or `format=csv` answers CSV.',
        tags: ['analytics'],
        headers: ClientIdHeaders,
        querystring: Type.Object({
          from: Type.Optional(Instant),
          to: Type.Optional(Instant),
          interval: Type.Optional(
            Type.Unsafe<ConcurrencyInterval>({
              type: 'string',
              enum: [...INTERVALS],
              default: 'minute',
              description: 'minute, hour or day',
            }),
          ),
          channel: Type.Optional(Type.String({ minLength: 1, maxLength: config.maxChannelLength })),
          format: FormatQuery,
        }),
        response: {
          200: jsonOrCsv(
            Type.Object({
              interval: Type.String(),
              channel: Type.Union([Type.String(), Type.Null()]),
              points: Type.Array(Point),
            }),
            'The points, oldest first',
          ),
          ...readErrors,
        },
      },
      config: { auth: 'token', budget: 'read' },
    },
    async (request, reply) => {
      const nowMs = clock.nowMs();
      const { query } = request;
      const interval = query.interval ?? 'minute';
      const toMs = query.to === undefined ? nowMs : instantOf('to', query.to);
      const fromMs = query.from === undefined ? toMs - DAY_MS : instantOf('from', query.from);
      if (fromMs > toMs)
        throw serviceError('INVALID_DATE_RANGE', `from (${query.from}) is after to (${query.to ?? 'now'})`);
      const needed = pointsNeeded(interval, fromMs, toMs, calendar);
      if (needed > MAX_POINTS)
        throw serviceError(
          'INVALID_DATE_RANGE',
          `interval: ${interval} needs ${needed} points for this range, more than ${MAX_POINTS}: choose a longer interval or a shorter range`,
        );
      const keptDays = interval === 'minute' ? config.historyMinuteDays : config.maxDays;
      if (fromMs < nowMs - keptDays * DAY_MS)
        throw serviceError(
          'INVALID_DATE_RANGE',
          `from: ${interval === 'minute' ? 'minutes are' : 'hours and days are'} kept for ${keptDays} days ` +
            `(${interval === 'minute' ? '--history-minute-days' : '--max-days'})` +
            (interval === 'minute' ? ': ask for interval=hour further back' : ''),
        );
      const channel = query.channel ?? null;
      const points = await store.concurrency({ channel, interval, fromMs, toMs }, nowMs);
      if (wantsCsv(request, query.format)) {
        const iso = minuteIsoFormatter();
        return reply.type(CSV_TYPE).send(
          toCsv(
            ['start', 'max', 'min', 'mean'],
            points.map((p) => [iso(p.startMs), p.max, p.min, roundedMean(p.mean)]),
          ),
        );
      }
      // Written as bytes rather than by the schema's serializer (see points-json.ts); the schema still documents it.
      return reply.type('application/json; charset=utf-8').send(pointsJson(interval, channel, points));
    },
  );

  app.get(
    '/analytics/peaks',
    {
      schema: {
        summary: "The highest online count: today's, the last 24 hours', the last 7 days' and the all-time one",
        operationId: 'getPeaks',
        description:
          'Exact: taken when a heartbeat raises the count, not sampled, each with the instant it was first reached. ' +
          `Today is in the configured time zone (${config.timeZone}). The all-time peak is saved in the same commit as ` +
          'the heartbeat that reached it.',
        tags: ['analytics'],
        headers: ClientIdHeaders,
        querystring: Type.Object({
          channel: Type.Optional(Type.String({ minLength: 1, maxLength: config.maxChannelLength })),
        }),
        response: {
          200: Type.Object({
            channel: Type.Union([Type.String(), Type.Null()]),
            online: Type.Integer({ description: 'Online now' }),
            today: Type.Ref('Peak'),
            last_24h: Type.Ref('Peak'),
            last_7d: Type.Ref('Peak'),
            all_time: Type.Ref('Peak'),
          }),
          ...readErrors,
        },
      },
      config: { auth: 'token', budget: 'read' },
    },
    async (request) => {
      const nowMs = clock.nowMs();
      const channel = request.query.channel ?? null;
      const [online, { today, all_time }, day, week] = await Promise.all([
        store.countOnline(nowMs, channel ?? undefined),
        dayAndRecord(store, calendar, channel, nowMs),
        store.peak(channel, nowMs - DAY_MS, nowMs),
        store.peak(channel, nowMs - 7 * DAY_MS, nowMs),
      ]);
      return { channel, online, today, last_24h: answerOf(day), last_7d: answerOf(week), all_time };
    },
  );
};
