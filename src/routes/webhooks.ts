// The webhook routes: send a test event to every receiver, and see what the outbox holds (docs/alerts.md).
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { serviceError } from '../errors.js';
import type { AppDeps } from '../http/deps.js';
import type { Delivery, DeliveryStatus } from '../store/store.js';
import { errorResponses } from './schemas.js';

const STATUSES = ['pending', 'failed', 'delivered'] as const;
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

const DeliverySchema = Type.Object(
  {
    id: Type.String({ description: 'The delivery: one event to one receiver' }),
    event_id: Type.String({ description: 'The webhook-id header a receiver gets (the same for every receiver)' }),
    type: Type.String(),
    receiver: Type.String(),
    status: Type.Union([Type.Literal('pending'), Type.Literal('failed'), Type.Literal('delivered')]),
    attempts: Type.Integer({ minimum: 0 }),
    last_status: Type.Union([Type.Integer(), Type.Null()], { description: 'HTTP status of the last attempt' }),
    last_error: Type.Union([Type.String(), Type.Null()], { description: 'Why the last attempt had no answer' }),
    next_attempt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    event_at: Type.String({ format: 'date-time', description: 'When the event happened' }),
    created: Type.String({ format: 'date-time', description: 'When it entered the outbox' }),
    done: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
      description: 'When it was delivered or given up',
    }),
  },
  { $id: 'WebhookDelivery' },
);

const answerOf = (delivery: Delivery) => ({
  id: delivery.id,
  event_id: delivery.eventId,
  type: delivery.type,
  receiver: delivery.receiver,
  status: delivery.status,
  attempts: delivery.attempts,
  last_status: delivery.lastStatus,
  last_error: delivery.lastError,
  next_attempt: iso(delivery.nextAttemptMs),
  event_at: iso(delivery.atMs) as string,
  created: iso(delivery.createdMs) as string,
  done: iso(delivery.doneMs),
});

export const webhookRoutes: FastifyPluginAsyncTypebox<AppDeps> = async (app, deps) => {
  const { store, clock, alerts, metrics } = deps;
  const errors = { 401: Type.Ref('Error'), 403: Type.Ref('Error'), ...errorResponses };
  app.addSchema(DeliverySchema);
  // An operator's `curl -X POST` sends no body: the same as an empty object (as the heartbeat routes take it).
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined || request.body === null) request.body = {};
  });

  app.post(
    '/webhooks/test',
    {
      schema: {
        summary: 'Send a webhook.test event to every receiver',
        operationId: 'postWebhookTest',
        description:
          'Puts a webhook.test event in the outbox for each --webhook-url; it is delivered, signed and retried like ' +
          'any event. Needs the API token (403 while none is configured); 409 when no receiver is configured.',
        tags: ['webhooks'],
        body: Type.Object({
          message: Type.Optional(Type.String({ maxLength: 500, description: 'Carried in the event data' })),
        }),
        response: {
          202: Type.Object({
            event_id: Type.String(),
            receivers: Type.Integer({ minimum: 0 }),
          }),
          409: Type.Ref('Error'),
          ...errors,
        },
      },
      config: { auth: 'admin', budget: 'read' },
    },
    async (request, reply) => {
      if (alerts === null) throw serviceError('WEBHOOKS_OFF');
      const nowMs = clock.nowMs();
      const { eventId, entries } = alerts.testEntries(nowMs, request.body.message ?? 'a test from online-stats');
      await store.outbox.add(entries, nowMs);
      metrics.webhookEvent('webhook.test');
      return reply.code(202).send({ event_id: eventId, receivers: entries.length });
    },
  );

  app.get(
    '/webhooks/deliveries',
    {
      schema: {
        summary: 'Recent webhook deliveries, with their attempts, last status and next attempt',
        operationId: 'getWebhookDeliveries',
        description:
          'The newest deliveries with the given status, newest first. A delivery is one event for one receiver; ' +
          'the outbox keeps at most --webhook-outbox-max of them. Needs the API token (403 while none is configured).',
        tags: ['webhooks'],
        querystring: Type.Object({
          status: Type.Optional(
            Type.Unsafe<DeliveryStatus>({ type: 'string', enum: [...STATUSES], default: 'pending' }),
          ),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
        }),
        response: {
          200: Type.Object({ deliveries: Type.Array(Type.Ref('WebhookDelivery')) }),
          ...errors,
        },
      },
      config: { auth: 'admin', budget: 'read' },
    },
    async (request) => {
      const { status = 'pending', limit = 100 } = request.query;
      return { deliveries: (await store.outbox.list(status, limit)).map(answerOf) };
    },
  );
};
