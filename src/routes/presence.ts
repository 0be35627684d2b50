// Per-user status and data rights: POST /presence (is this user online, when was she last seen), and erasure
// (DELETE /clients/{client_id}, POST /clients/erase). See docs/privacy.md.
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import type { AppDeps } from '../http/deps.js';
import type { PresenceRecord } from '../store/store.js';
import { ClientId, channelSchema, errorResponses } from './schemas.js';

/** Most client ids one lookup or erasure names. */
export const MAX_PRESENCE_IDS = 1000;

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** Telegram's buckets: coarse enough that a lookup does not tell when someone sleeps or works. */
export const LAST_SEEN_BUCKETS = ['now', 'recently', 'within_week', 'within_month', 'long_ago', 'never'] as const;
export type LastSeenBucket = (typeof LAST_SEEN_BUCKETS)[number];

/** The bucket of a last heartbeat at `lastSeenMs` (null: never), as of `nowMs`. */
export function lastSeenBucket(lastSeenMs: number | null, nowMs: number, heartbeatTimeoutMs: number): LastSeenBucket {
  if (lastSeenMs === null) return 'never';
  const ageMs = nowMs - lastSeenMs;
  if (ageMs <= heartbeatTimeoutMs) return 'now';
  if (ageMs <= 72 * HOUR_MS) return 'recently';
  if (ageMs <= 7 * DAY_MS) return 'within_week';
  if (ageMs <= 30 * DAY_MS) return 'within_month';
  return 'long_ago';
}

const ClientIds = Type.Array(ClientId, {
  minItems: 1,
  maxItems: MAX_PRESENCE_IDS,
  description: `At most ${MAX_PRESENCE_IDS} client ids, as the clients send them in X-Client-Id or client_id.`,
});

/** Each id costs one unit of the caller's presence budget (--presence-rate-limit). */
const idsCost = (request: FastifyRequest): number =>
  (request.body as { client_ids: readonly string[] }).client_ids.length;

export const presenceRoutes: FastifyPluginAsyncTypebox<AppDeps> = async (app, deps) => {
  const { config, store, clock, guards } = deps;
  const exact = config.presenceDetail === 'exact';
  const lastSeen = (record: PresenceRecord, nowMs: number): string =>
    exact
      ? record.lastSeenMs === null
        ? 'never'
        : new Date(record.lastSeenMs).toISOString()
      : lastSeenBucket(record.lastSeenMs, nowMs, config.heartbeatTimeoutMs);

  app.post(
    '/presence',
    {
      bodyLimit: 1024 + MAX_PRESENCE_IDS * 300,
      schema: {
        summary: 'Whether each of these clients is online, and when it was last seen',
        operationId: 'postPresence',
        description:
          'Answers only about the client ids named: there is no way to list who is online. `last_seen` is a bucket ' +
          '(`now`: within the heartbeat timeout, `recently`: within 72 hours, `within_week`, `within_month`, ' +
          '`long_ago`, `never`), or with --presence-detail exact the instant (ISO 8601) or `never`. A client that ' +
          'sent `"presence": false` in its last heartbeat, one erased, and one past --retention-days answer ' +
          '`never` and offline. Needs the API token (403 while none is configured); each id spends one unit of the ' +
          "caller's presence budget (--presence-rate-limit, ids per second).",
        tags: ['presence'],
        body: Type.Object(
          {
            client_ids: ClientIds,
            channel: Type.Optional({
              ...channelSchema(config.maxChannelLength),
              description: 'Online on this channel (else: at all)',
            }),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            clients: Type.Array(
              Type.Object({
                client_id: Type.String(),
                online: Type.Boolean(),
                last_seen: Type.String({
                  description: `One of ${LAST_SEEN_BUCKETS.join(', ')}; with --presence-detail exact, an instant or never`,
                }),
              }),
              { description: 'One per id asked, in the order asked' },
            ),
          }),
          401: Type.Ref('Error'),
          403: Type.Ref('Error'),
          ...errorResponses,
        },
      },
      config: { auth: 'admin', budget: 'presence', callerFromBody: false, cost: idsCost },
    },
    async (request) => {
      const { client_ids: clientIds, channel } = request.body;
      const nowMs = clock.nowMs();
      const records = await store.presence(
        clientIds.map((clientId) => deps.identityOfClient(clientId)),
        channel ?? null,
        nowMs,
      );
      return {
        clients: clientIds.map((clientId, i) => {
          const record = records[i] as PresenceRecord;
          return { client_id: clientId, online: record.online, last_seen: lastSeen(record, nowMs) };
        }),
      };
    },
  );

  const Erased = Type.Object({
    found: Type.Integer({ minimum: 0, description: 'How many of the ids the service knew (again: 0)' }),
  });
  const erase = async (clientIds: readonly string[]): Promise<{ found: number }> => {
    const identities = clientIds.map((clientId) => deps.identityOfClient(clientId));
    const found = await store.erase(identities, clock.nowMs());
    await guards.forget(identities);
    return { found };
  };
  const eraseDescription =
    'Removes the client everywhere the store keeps one (last and first heartbeat, channels, the online count, the ' +
    'rate limiter), durably before answering; it counts as new if it comes back. Counts already made (days, ' +
    'weekly sketches, the concurrency history) stay: they hold no identity. Idempotent. Needs the API token; each ' +
    "id spends one unit of the caller's presence budget.";

  app.delete(
    '/clients/:client_id',
    {
      schema: {
        summary: 'Erase one client',
        operationId: 'deleteClient',
        description: eraseDescription,
        tags: ['presence'],
        params: Type.Object({ client_id: ClientId }),
        response: { 200: Erased, 401: Type.Ref('Error'), 403: Type.Ref('Error'), ...errorResponses },
      },
      config: { auth: 'admin', budget: 'presence', callerFromBody: false },
    },
    async (request) => erase([request.params.client_id]),
  );

  app.post(
    '/clients/erase',
    {
      bodyLimit: 1024 + MAX_PRESENCE_IDS * 300,
      schema: {
        summary: 'Erase many clients',
        operationId: 'eraseClients',
        description: eraseDescription,
        tags: ['presence'],
        body: Type.Object({ client_ids: ClientIds }, { additionalProperties: false }),
        response: { 200: Erased, 401: Type.Ref('Error'), 403: Type.Ref('Error'), ...errorResponses },
      },
      config: { auth: 'admin', budget: 'presence', callerFromBody: false, cost: idsCost },
    },
    async (request) => erase(request.body.client_ids),
  );
};
