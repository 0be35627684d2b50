// Analytics reads: daily, weekly and monthly actives, new identities and stickiness; a one-read summary.
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AppDeps } from '../http/deps.js';
import { parseDayKey, shiftDay } from '../calendar.js';
import { serviceError } from '../errors.js';
import { CSV_TYPE, FormatQuery, jsonOrCsv, toCsv, wantsCsv } from './csv.js';
import { dayAndRecord } from './history.js';
import { ChannelCount, ClientIdHeaders, errorResponses } from './schemas.js';

const DAY_MS = 86_400_000;
/** Longest range of /analytics/daily, in days. */
export const MAX_RANGE_DAYS = 366;
const DEFAULT_RANGE_DAYS = 30;
const Day = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$', description: 'YYYY-MM-DD in the configured time zone' });

/** Days of /analytics/daily that one unit of the read budget pays for. */
export const DAYS_PER_READ = 31;
/** Longest stretch of event-loop time one /analytics/daily request takes before letting others run, in ms. */
const YIELD_AFTER_MS = 4;

/** One day's row of /analytics/daily. */
const DailyActives = Type.Object(
  {
    day: Type.String(),
    dau: Type.Integer({ description: 'exact' }),
    wau: Type.Integer({ description: 'estimated' }),
    mau: Type.Integer({ description: 'estimated' }),
    new: Type.Integer({ description: 'exact' }),
    stickiness: Type.Number({ description: 'dau / mau, estimated' }),
  },
  { $id: 'DailyActives' },
);

interface RangeQuery {
  from?: string;
  to?: string;
}

export const analyticsRoutes: FastifyPluginAsyncTypebox<AppDeps> = async (app, deps) => {
  const { config, store, clock } = deps;

  /** The range asked for, defaults applied and checked: 400 naming the parameter otherwise. */
  const rangeOf = (query: RangeQuery): { from: string; to: string } => {
    const today = deps.calendar.dayOf(clock.nowMs()).key;
    const to = query.to ?? today;
    // `to` is checked before the default `from` is counted back from it: 2026-02-30 has no day before it.
    const toMs = parseDayKey(to);
    if (toMs === null) throw serviceError('INVALID_DATE_RANGE', `to: ${to} is not a calendar day`);
    const from = query.from ?? shiftDay(to, -(DEFAULT_RANGE_DAYS - 1));
    const fromMs = parseDayKey(from);
    if (fromMs === null) throw serviceError('INVALID_DATE_RANGE', `from: ${from} is not a calendar day`);
    if (fromMs > toMs) throw serviceError('INVALID_DATE_RANGE', `from (${from}) is after to (${to})`);
    if ((toMs - fromMs) / DAY_MS + 1 > MAX_RANGE_DAYS)
      throw serviceError('INVALID_DATE_RANGE', `from..to spans more than ${MAX_RANGE_DAYS} days`);
    return { from, to };
  };

  /** Days in the range, for its cost; a range the handler will refuse costs one unit. */
  const rangeDays = (query: RangeQuery): number => {
    try {
      const { from, to } = rangeOf(query);
      return ((parseDayKey(to) as number) - (parseDayKey(from) as number)) / DAY_MS + 1;
    } catch {
      return 1;
    }
  };
  const readErrors = { 401: Type.Ref('Error'), ...errorResponses };

  app.get(
    '/analytics/daily',
    {
      schema: {
        summary: 'Daily, weekly and monthly actives, new identities and stickiness, per day',
        operationId: 'getDailyAnalytics',
        description:
          `Days follow the configured time zone (${config.timeZone}). dau and new are exact. wau (7 days ending that day), mau ` +
          '(30 days ending that day) and stickiness (dau/mau) come from HyperLogLog sketches: standard error about 0.8%, and ' +
          `never below dau (wau) or wau (mau). Default range: the last ${DEFAULT_RANGE_DAYS} days; at most ${MAX_RANGE_DAYS}. ` +
          `Each ${DAYS_PER_READ} days of the range spend one unit of the read rate limit (a year: 12). ` +
          '`Accept: text/csv` or `format=csv` answers CSV.',
        tags: ['analytics'],
        headers: ClientIdHeaders,
        querystring: Type.Object({ from: Type.Optional(Day), to: Type.Optional(Day), format: FormatQuery }),
        response: {
          200: jsonOrCsv(
            Type.Object({
              time_zone: Type.String(),
              days: Type.Array(DailyActives),
            }),
            'One row per day, oldest first',
          ),
          ...readErrors,
        },
      },
      // A month of days costs one read; a year, 12: wide ranges spend more of the caller's budget.
      config: {
        auth: 'token',
        budget: 'read',
        cost: (request) => Math.max(1, Math.ceil(rangeDays(request.query as RangeQuery) / DAYS_PER_READ)),
      },
    },
    async (request, reply) => {
      const { from, to } = rangeOf(request.query);
      // Every day the windows reach, made once: making each window's first day apart cost more than the counts.
      const reach = deps.calendar.daysBetween(shiftDay(from, -29), to);
      const days = reach.slice(29);
      const activity = await store.dailyActivity(days);
      const rows = [];
      // Day by day, giving the event loop back every few milliseconds: a year of windows not yet
      // cached must not hold up everyone else's heartbeats while it is merged.
      let sliceStartedMs = performance.now();
      for (const [i, { day, active, new: fresh }] of activity.entries()) {
        const weekly = await store.distinctActive(reach[i + 23] as string, day);
        const monthly = await store.distinctActive(reach[i] as string, day);
        const wau = Math.max(weekly, active);
        const mau = Math.max(monthly, wau);
        rows.push({
          day,
          dau: active,
          wau,
          mau,
          new: fresh,
          stickiness: mau === 0 ? 0 : Math.round((active / mau) * 10_000) / 10_000,
        });
        if (performance.now() - sliceStartedMs > YIELD_AFTER_MS) {
          await new Promise((resolve) => setImmediate(resolve));
          sliceStartedMs = performance.now();
        }
      }
      if (wantsCsv(request, request.query.format))
        return reply.type(CSV_TYPE).send(
          toCsv(
            ['day', 'dau', 'wau', 'mau', 'new', 'stickiness'],
            rows.map((row) => [row.day, row.dau, row.wau, row.mau, row.new, row.stickiness]),
          ),
        );
      return { time_zone: config.timeZone, days: rows };
    },
  );

  app.get(
    '/analytics/summary',
    {
      schema: {
        summary: "Online now, today's and the all-time peak, active in the last 1, 7 and 30 days, and the top channels",
        operationId: 'getAnalyticsSummary',
        tags: ['analytics'],
        headers: ClientIdHeaders,
        response: {
          200: Type.Object({
            online_clients_count: Type.Integer(),
            peaks: Type.Object(
              { today: Type.Ref('Peak'), all_time: Type.Ref('Peak') },
              { description: "Today's and the all-time peak (see /analytics/peaks)" },
            ),
            active: Type.Object({ '1': Type.Integer(), '7': Type.Integer(), '30': Type.Integer() }),
            top_channels: Type.Array(ChannelCount),
            time_zone: Type.String(),
          }),
          ...readErrors,
        },
      },
      config: { auth: 'token', budget: 'read' },
    },
    async () => {
      const nowMs = clock.nowMs();
      const [online, peaks, day, week, month, top] = await Promise.all([
        store.countOnline(nowMs),
        dayAndRecord(store, deps.calendar, null, nowMs),
        store.countActive(nowMs - DAY_MS, nowMs),
        store.countActive(nowMs - 7 * DAY_MS, nowMs),
        store.countActive(nowMs - 30 * DAY_MS, nowMs),
        store.topChannels(nowMs, 10),
      ]);
      return {
        online_clients_count: online,
        peaks,
        active: { '1': day, '7': week, '30': month },
        top_channels: top,
        time_zone: config.timeZone,
      };
    },
  );
};
