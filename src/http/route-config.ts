// What a route needs, declared in its options (`config: { auth: 'token', budget: 'read' }`) and applied by one onRoute
// hook.
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import type { Config } from '../config.js';
import type { Budget, Guards } from './guards.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `token`: needs "Authorization: Bearer <token>" when an API token is configured (documented as `security`). */
    auth?: 'token';
    /** The rate-limit budget each request spends (and the per-address cap, for callers that name themselves). */
    budget?: Budget;
    /**
     * false: the body's client_id names other clients (batch ingest), so the caller is its
     * X-Client-Id or its address.
     */
    callerFromBody?: boolean;
  }
}

type Check = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/**
 * Like @fastify/rate-limit's `config.rateLimit`: routes say what they need, and this hook puts the
 * checks in front of the route's own pre-handlers, in the order token, caller, limit (an
 * unauthorised caller spends no budget), and writes the OpenAPI `security` of token routes.
 * Registered before any route, so it sees them all.
 */
export function applyRouteConfig(app: FastifyInstance, config: Readonly<Config>, guards: Guards): void {
  const security = config.apiToken === null ? [] : [{ bearer: [] }];
  app.addHook('onRoute', (route: RouteOptions) => {
    const needs = route.config ?? {};
    const check = checkFor(needs.auth === 'token', needs.callerFromBody === false, needs.budget, guards);
    if (needs.auth === 'token') route.schema = { ...route.schema, security };
    if (check === null) return;
    const own =
      route.preHandler === undefined ? [] : Array.isArray(route.preHandler) ? route.preHandler : [route.preHandler];
    route.preHandler = [check, ...own];
  });
}

function checkFor(
  token: boolean,
  callerFromHeaders: boolean,
  budget: Budget | undefined,
  guards: Guards,
): Check | null {
  if (!token && !callerFromHeaders && budget === undefined) return null;
  // The heartbeat's own check is the common case: one await, no branches.
  if (!token && !callerFromHeaders && budget !== undefined)
    return (request, reply) => guards.rateLimit(budget, request, reply);
  return async (request, reply) => {
    if (token) guards.requireToken(request);
    if (callerFromHeaders) guards.callerOf(request, { ignoreBody: true });
    if (budget !== undefined) await guards.rateLimit(budget, request, reply);
  };
}
