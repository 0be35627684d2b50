// Liveness and readiness for orchestrators (never rate-limited, never behind the token), and the Prometheus metrics
// (behind the token).
import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AppDeps } from '../http/deps.js';
import { serviceError } from '../errors.js';

export const healthRoutes: FastifyPluginAsyncTypebox<AppDeps> = async (app, deps) => {
  const Status = Type.Object({ status: Type.String() });
  app.get(
    '/healthz',
    {
      schema: {
        summary: 'Liveness: the process answers',
        operationId: 'getLiveness',
        tags: ['health'],
        response: { 200: Status },
      },
    },
    async () => ({
      status: 'ok',
    }),
  );
  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Readiness: the store is open and writable, and the service is not shutting down',
        operationId: 'getReadiness',
        tags: ['health'],
        response: { 200: Status, 503: Type.Ref('Error') },
      },
    },
    async () => {
      if (deps.lifecycle.shuttingDown) throw serviceError('SHUTTING_DOWN');
      await deps.store.check();
      return { status: 'ready' };
    },
  );

  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics',
        operationId: 'getMetrics',
        tags: ['health'],
        response: {
          // Prometheus's text format, the content type prom-client's registry answers with.
          200: {
            description: 'The metrics in the Prometheus text exposition format',
            content: { [deps.metrics.registry.contentType]: { schema: Type.String() } },
          },
          401: Type.Ref('Error'),
        },
      },
      config: { auth: 'token' },
    },
    async (_request, reply) => {
      reply.type(deps.metrics.registry.contentType);
      return deps.metrics.registry.metrics();
    },
  );
};
