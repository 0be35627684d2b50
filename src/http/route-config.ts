// What a route needs, declared in its options (`config: { auth: 'token', budget: 'read' }`) and applied by one onRoute
// hook.
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import type { Config } from '../config.js';
import type { Budget, Credential, Guards } from './guards.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * `token`: needs "Authorization: Bearer <token>" when an API token is configured (documented as `security`).
     * `ingest`: needs the ingest or the API token, and is off while neither is configured.
     * `admin`: needs the API token, and is off (403) while none is configured.
     */
    auth?: Credential;
    /** The rate-limit budget each request spends (and one unit of its address block's cap). */
    budget?: Budget;
    /** Units of the budget a request spends, from its validated query and body (1 when absent). */
    cost?: (request: FastifyRequest) => number;
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
 * unauthorised caller spends no budget), and writes the OpenAPI `security` of every route (none for open ones).
 * Registered before any route, so it sees them all.
 */
export function applyRouteConfig(app: FastifyInstance, config: Readonly<Config>, guards: Guards): void {
  const security = {
    token: config.apiToken === null ? [] : [{ bearer: [] }],
    ingest: [{ bearer: [] }],
    admin: [{ bearer: [] }],
  };
  app.addHook('onRoute', (route: RouteOptions) => {
    const needs = route.config ?? {};
    const check = checkFor(needs, guards);
    // A route that asks for no credential says so (`security: []`): a document that leaves security
    // out leaves readers guessing whether it needs the token.
    if (needs.auth !== undefined) route.schema = { ...route.schema, security: security[needs.auth] };
    else if (route.schema !== undefined && route.schema.security === undefined)
      route.schema = { ...route.schema, security: [] };
    if (check === null) return;
    const own =
      route.preHandler === undefined ? [] : Array.isArray(route.preHandler) ? route.preHandler : [route.preHandler];
    route.preHandler = [check, ...own];
  });
}

function checkFor(
  { auth, callerFromBody, budget, cost }: { auth?: Credential; callerFromBody?: boolean; budget?: Budget; cost?: Cost },
  guards: Guards,
): Check | null {
  const callerFromHeaders = callerFromBody === false;
  if (auth === undefined && !callerFromHeaders && budget === undefined) return null;
  // The heartbeat's own check is the common case: one await, no branches.
  if (auth === undefined && !callerFromHeaders && budget !== undefined && cost === undefined)
    return (request, reply) => guards.rateLimit(budget, request, reply);
  return async (request, reply) => {
    if (auth !== undefined) guards.requireCredential(auth, request, reply);
    if (callerFromHeaders) guards.callerOf(request, { ignoreBody: true });
    if (budget !== undefined) await guards.rateLimit(budget, request, reply, cost?.(request) ?? 1);
  };
}

type Cost = (request: FastifyRequest) => number;
