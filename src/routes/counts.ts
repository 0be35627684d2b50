// The demo's reads: /online_clients and /total_users, by GET or POST, plus /top_channels.
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AppDeps } from '../http/deps.js';
import { ChannelCount, ClientIdHeaders, channelSchema, errorResponses, withDefault } from './schemas.js';

const DAY_MS = 86_400_000;

/** The options with their schema's operationId set. */
const named = <T extends { schema: object }>(options: T, operationId: string): T => ({
  ...options,
  schema: { ...options.schema, operationId },
});

export const countRoutes: FastifyPluginAsyncTypebox<AppDeps> = async (app, deps) => {
  const { config, store, clock } = deps;
  const readErrors = { 401: Type.Ref('Error'), ...errorResponses };

  const online = {
    schema: {
      summary: 'How many clients are online now',
      description:
        'Identities whose last heartbeat is within the heartbeat timeout (and that have not left), exact at the moment of the query.',
      tags: ['reads'],
      headers: ClientIdHeaders,
      querystring: Type.Object({ channel: Type.Optional(channelSchema(config.maxChannelLength)) }),
      response: { 200: Type.Object({ online_clients_count: Type.Integer({ minimum: 0 }) }), ...readErrors },
    },
    config: { auth: 'token', budget: 'read' } as const,
  };
  const onlineHandler = async (request: { query: { channel?: string } }) => ({
    online_clients_count: await store.countOnline(clock.nowMs(), request.query.channel),
  });
  // GET and POST share their options but not their operationId, which must be unique in the document.
  app.get('/online_clients', named(online, 'getOnlineClients'), onlineHandler);
  app.post('/online_clients', named(online, 'postOnlineClients'), onlineHandler);

  const total = {
    schema: {
      summary: 'How many distinct clients were active in the last `days` days',
      description: 'Distinct identities whose last heartbeat is within the last days × 24 hours.',
      tags: ['reads'],
      headers: ClientIdHeaders,
      querystring: Type.Object({
        days: withDefault(
          Type.Integer({
            minimum: 1,
            maximum: config.maxDays,
            default: 7,
            description: `Look-back in days, 1 to ${config.maxDays}`,
          }),
        ),
      }),
      response: {
        200: Type.Object({ recent_users_count: Type.Integer({ minimum: 0 }), days: Type.Integer() }),
        ...readErrors,
      },
    },
    config: { auth: 'token', budget: 'read' } as const,
  };
  const totalHandler = async (request: { query: { days: number } }) => {
    const nowMs = clock.nowMs();
    const { days } = request.query;
    return { recent_users_count: await store.countActive(nowMs - days * DAY_MS, nowMs), days };
  };
  app.get('/total_users', named(total, 'getTotalUsers'), totalHandler);
  app.post('/total_users', named(total, 'postTotalUsers'), totalHandler);

  app.get(
    '/top_channels',
    {
      schema: {
        summary: 'Channels with the most clients online now',
        operationId: 'getTopChannels',
        tags: ['reads'],
        headers: ClientIdHeaders,
        querystring: Type.Object({ limit: withDefault(Type.Integer({ minimum: 1, maximum: 100, default: 10 })) }),
        response: {
          200: Type.Object({ channels: Type.Array(ChannelCount) }),
          ...readErrors,
        },
      },
      config: { auth: 'token', budget: 'read' } as const,
    },
    async (request) => ({ channels: await store.topChannels(clock.nowMs(), request.query.limit) }),
  );
};
