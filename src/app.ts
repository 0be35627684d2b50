// buildApp(): the service as its own Fastify app, from injected config, store and clock: the server's options and
// connection caps, then the service itself (plugin.ts) at the root; no I/O at import.
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { installConnectionLimits } from './http/connection-limits.js';
import type { AppDeps } from './http/deps.js';
import { createDeps, installService, type DepsOptions } from './plugin.js';

export type { AppDeps } from './http/deps.js';

export interface AppOptions extends DepsOptions {
  /** Fastify's logger option; defaults to pino at config.logLevel. */
  logger?: FastifyServerOptions['logger'];
}

export type App = FastifyInstance & { deps: AppDeps };

export async function buildApp(options: AppOptions): Promise<App> {
  const { config } = options;
  const app = Fastify({
    logger: options.logger ?? { level: config.logLevel },
    // Per-request log lines would cost more than the heartbeat itself; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: config.trustProxy.length > 0 ? [...config.trustProxy] : false,
    bodyLimit: 4096,
    // DELETE /clients/{client_id}: a client id of 128 characters, percent-encoded (Fastify's default is 100).
    routerOptions: { maxParamLength: 3 * 128 },
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    // Node closes, with a 408, a connection that has not sent a whole request (headers and body) in time, one
    // that sends nothing included; it looks every connectionsCheckingInterval (30 s by default, too coarse).
    requestTimeout: config.requestTimeoutMs,
    http: {
      headersTimeout: config.requestTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, Math.ceil(config.requestTimeoutMs / 2)),
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  const deps = createDeps(options);
  installConnectionLimits(app.server, config, deps.metrics);
  // At the root, not registered as a child: the whole server is the service, unknown URLs included.
  await installService(app, deps, true);
  return Object.assign(app, { deps });
}
