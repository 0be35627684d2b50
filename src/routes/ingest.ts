// Heartbeats in: POST /heartbeat, POST /leave (the demo's clients) and POST /heartbeats (gateways, in batches).
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import type { AppDeps } from '../http/deps.js';
import { MAX_CLIENT_ID_LENGTH } from '../identity.js';
import { ClientId, ClientIdHeaders, channelSchema, errorResponses } from './schemas.js';

/** Largest single heartbeat body, in bytes: a client id and a channel fit many times over. */
export const HEARTBEAT_BODY_LIMIT_BYTES = 2048;

/**
 * Whether `--channels` lets a channel be tracked. Without the list, anyone can name channels, and
 * junk names could fill the --max-channels cap for the heartbeat timeout; with it, they cannot.
 */
export function channelFilter(allowed: readonly string[]): (channel: string) => boolean {
  if (allowed.length === 0) return () => true;
  const exact = new Set(allowed.filter((name) => !name.endsWith('*')));
  const prefixes = allowed.filter((name) => name.endsWith('*')).map((name) => name.slice(0, -1));
  return (channel) => exact.has(channel) || prefixes.some((prefix) => channel.startsWith(prefix));
}

export const ingestRoutes: FastifyPluginAsyncTypebox<AppDeps> = async (app, deps) => {
  const { config, store, clock, guards } = deps;
  const allowed = channelFilter(config.allowedChannels);
  /**
   * The channel to record: one not in --channels is dropped (the heartbeat still counts online),
   * with a Warning header saying so, as when the channel cap is reached.
   */
  const channelOf = (channel: string | undefined, reply: FastifyReply, heartbeats: number): string | null => {
    if (channel === undefined) return null;
    if (allowed(channel)) return channel;
    deps.metrics.heartbeatsRejected('channel_not_allowed', heartbeats);
    reply.header('warning', '199 online-stats "channel not tracked: it is not in the configured --channels"');
    return null;
  };
  const Channel = channelSchema(config.maxChannelLength);
  const Presence = Type.Boolean({
    description:
      'false: count this client in every figure, but POST /presence answers `never` for it until a heartbeat ' +
      'comes without the flag (see docs/privacy.md)',
  });
  const HeartbeatBody = Type.Object(
    { client_id: Type.Optional(ClientId), channel: Type.Optional(Channel), presence: Type.Optional(Presence) },
    { additionalProperties: false },
  );

  // The demo's clients post no body at all; it means the same as an empty object.
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined || request.body === null) request.body = {};
  });

  app.post(
    '/heartbeat',
    {
      bodyLimit: HEARTBEAT_BODY_LIMIT_BYTES,
      schema: {
        summary: 'Report that the caller is online now',
        operationId: 'postHeartbeat',
        description:
          'An empty body is a valid heartbeat. The answer comes only after the heartbeat is committed. ' +
          'Also accepts text/plain holding JSON (navigator.sendBeacon).',
        tags: ['ingest'],
        headers: ClientIdHeaders,
        body: HeartbeatBody,
        response: {
          200: Type.Object({
            message: Type.Literal('Heartbeat received'),
            ip: Type.String({ description: 'The caller address the service saw' }),
          }),
          ...errorResponses,
        },
      },
      config: { budget: 'ingest' },
    },
    async (request, reply) => {
      const caller = guards.callerOf(request);
      const channel = channelOf(request.body.channel, reply, 1);
      const beat =
        request.body.presence === false
          ? { identity: caller.identity, channel, presence: false }
          : { identity: caller.identity, channel };
      const outcome = await store.recordHeartbeats([beat], clock.nowMs());
      deps.metrics.heartbeatsAccepted(1);
      if (outcome.channelsRefused > 0) {
        deps.metrics.heartbeatsRejected('channel_limit', outcome.channelsRefused);
        reply.header(
          'warning',
          `199 online-stats "channel not tracked: ${config.maxChannels} channels are online already"`,
        );
      }
      return { message: 'Heartbeat received' as const, ip: caller.address };
    },
  );

  app.post(
    '/leave',
    {
      bodyLimit: HEARTBEAT_BODY_LIMIT_BYTES,
      schema: {
        summary: 'Report that the caller is offline now',
        operationId: 'postLeave',
        description: 'The caller stops counting as online at once, on every channel; it still counts as active today.',
        tags: ['ingest'],
        headers: ClientIdHeaders,
        body: HeartbeatBody,
        response: {
          200: Type.Object({ message: Type.Literal('Leave received'), ip: Type.String() }),
          ...errorResponses,
        },
      },
      config: { budget: 'ingest' },
    },
    async (request) => {
      const caller = guards.callerOf(request);
      await store.recordLeaves([caller.identity], clock.nowMs());
      return { message: 'Leave received' as const, ip: caller.address };
    },
  );

  app.post(
    '/heartbeats',
    {
      // Room for the largest allowed batch of the longest ids, JSON-quoted.
      bodyLimit: 1024 + config.maxBatchIds * (MAX_CLIENT_ID_LENGTH * 2 + 4),
      schema: {
        summary: 'Report many clients online at once (servers and gateways)',
        operationId: 'postHeartbeats',
        description:
          `Marks every id online, durably, in one commit. At most ${config.maxBatchIds} ids. ` +
          'Needs the ingest token or the API token, and answers 403 while the service has neither configured. ' +
          "Each id spends one unit of the caller's batch budget (--batch-rate-limit, ids per second).",
        tags: ['ingest'],
        headers: ClientIdHeaders,
        body: Type.Object(
          {
            client_ids: Type.Array(ClientId, { minItems: 1, maxItems: config.maxBatchIds }),
            channel: Type.Optional(Channel),
            presence: Type.Optional(Presence),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ accepted: Type.Integer({ description: 'Heartbeats recorded' }) }),
          401: Type.Ref('Error'),
          403: Type.Ref('Error'),
          ...errorResponses,
        },
      },
      // The batch's caller is the gateway, named by X-Client-Id or its address, not the ids inside.
      // Each id it names costs one unit: a limit on requests would let one caller add ids 10,000 times as fast.
      config: {
        auth: 'ingest',
        budget: 'batch',
        callerFromBody: false,
        cost: (request) => (request.body as { client_ids: readonly string[] }).client_ids.length,
      },
    },
    async (request, reply) => {
      const channel = channelOf(request.body.channel, reply, request.body.client_ids.length);
      const hidden = request.body.presence === false;
      const beats = request.body.client_ids.map((clientId) =>
        hidden
          ? { identity: deps.identityOfClient(clientId), channel, presence: false }
          : { identity: deps.identityOfClient(clientId), channel },
      );
      const outcome = await store.recordHeartbeats(beats, clock.nowMs());
      deps.metrics.heartbeatsAccepted(beats.length);
      if (outcome.channelsRefused > 0) {
        deps.metrics.heartbeatsRejected('channel_limit', outcome.channelsRefused);
        reply.header(
          'warning',
          `199 online-stats "channel not tracked: ${config.maxChannels} channels are online already"`,
        );
      }
      return { accepted: beats.length };
    },
  );
};
