// The demo's reads: /online_clients and /total_users, by GET or POST, plus /top_channels.
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AppDeps } from '../http/deps.js';
import { ClientIdHeaders, channelSchema, errorResponses } from './schemas.js';

const DAY_MS = 86_400_000;

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
  app.get('/online_clients', online, onlineHandler);
  app.post('/online_clients', online, onlineHandler);

  const total = {
    schema: {
      summary: 'How many distinct clients were active in the last `days` days',
      description: 'Distinct identities whose last heartbeat is within the last days × 24 hours.',
      tags: ['reads'],
      headers: ClientIdHeaders,
      querystring: Type.Object({
        days: Type.Integer({
          minimum: 1,
          maximum: config.maxDays,
          default: 7,
          description: `Look-back in days, 1 to ${config.maxDays}`,
        }),
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
  app.get('/total_users', total, totalHandler);
  app.post('/total_users', total, totalHandler);

  app.get(
    '/top_channels',
    {
      schema: {
        summary: 'Channels with the most clients online now',
        tags: ['reads'],
        headers: ClientIdHeaders,
        querystring: Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 100, default: 10 }) }),
        response: {
          200: Type.Object({ channels: Type.Array(Type.Object({ channel: Type.String(), online: Type.Integer() })) }),
          ...readErrors,
        },
      },
      config: { auth: 'token', budget: 'read' } as const,
    },
    async (request) => ({ channels: await store.topChannels(clock.nowMs(), request.query.limit) }),
  );
};
