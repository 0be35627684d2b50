// The OpenAPI document at /openapi.json says what the service does: optional bodies and defaulted parameters, security
// on every guarded route (checked against the answers), named components, and the content types that are not JSON.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { InjectOptions } from 'fastify';
import { testApp, type TestApp } from './support/app.js';

interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  schema: { default?: unknown };
}
interface Operation {
  operationId?: string;
  security?: Record<string, string[]>[];
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, unknown> };
  responses: Record<string, { content?: Record<string, unknown> }>;
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> };
}

const TOKEN = 'openapi-test-token-0123456789';
const BEARER = [{ bearer: [] }];
/** Guarded whether or not a token is configured (403 while none is). */
const ALWAYS_GUARDED = [
  'post /heartbeats',
  'post /webhooks/test',
  'get /webhooks/deliveries',
  'post /presence',
  'delete /clients/{client_id}',
  'post /clients/erase',
];
/** Guarded only once --api-token is set: the reads and /metrics. */
const GUARDED_WITH_TOKEN = [
  'get /online_clients',
  'post /online_clients',
  'get /total_users',
  'post /total_users',
  'get /top_channels',
  'get /analytics/daily',
  'get /analytics/summary',
  'get /analytics/concurrency',
  'get /analytics/peaks',
  'get /events',
  'get /metrics',
];
/** Every route that needs a credential when --api-token is set. */
const GUARDED = [...GUARDED_WITH_TOKEN, ...ALWAYS_GUARDED];
/** Bodies that pass validation, so what answers is the token check. */
const VALID_BODIES: Record<string, object> = {
  'post /heartbeats': { client_ids: ['a'] },
  'post /presence': { client_ids: ['a'] },
  'post /clients/erase': { client_ids: ['a'] },
};
/** The routes anyone may call, token or not. */
const OPEN = ['post /heartbeat', 'post /leave', 'get /healthz', 'get /readyz'];

const operations = (doc: Document): [string, Operation][] =>
  Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]): [string, Operation] => [`${method} ${path}`, op]),
  );

const operation = (doc: Document, key: string): Operation => {
  const [method, path] = key.split(' ') as [string, string];
  const op = doc.paths[path]?.[method];
  assert.ok(op, `${key} is documented`);
  return op;
};

const query = (op: Operation, name: string): Parameter => {
  const parameter = op.parameters?.find((p) => p.in === 'query' && p.name === name);
  assert.ok(parameter, `query parameter ${name} is documented`);
  return parameter;
};

async function documentOf(t: TestApp): Promise<Document> {
  const res = await t.app.inject({ url: '/openapi.json' });
  assert.equal(res.statusCode, 200);
  return res.json<Document>();
}

describe('the OpenAPI document, with an API token configured', () => {
  let t: TestApp;
  let doc: Document;
  before(async () => {
    t = await testApp({ apiToken: TOKEN, ingestRateLimit: null, readRateLimit: null, batchRateLimit: null });
    doc = await documentOf(t);
  });
  after(() => t.close());

  it('does not require the body of POST /heartbeat or POST /leave, which may be empty', async () => {
    for (const key of ['post /heartbeat', 'post /leave']) {
      const body = operation(doc, key).requestBody;
      assert.ok(body, `${key} documents its body`);
      assert.equal(body.required, false, key);
    }
    // What the document promises: no body at all is a heartbeat.
    const res = await t.app.inject({ method: 'POST', url: '/heartbeat' });
    assert.equal(res.statusCode, 200);
    // The batch needs its ids, so its body stays required.
    assert.equal(operation(doc, 'post /heartbeats').requestBody?.required, true);
  });

  it('does not require days or limit, and gives their defaults', () => {
    for (const key of ['get /total_users', 'post /total_users']) {
      const days = query(operation(doc, key), 'days');
      assert.notEqual(days.required, true, `${key} days`);
      assert.equal(days.schema.default, 7);
    }
    const limit = query(operation(doc, 'get /top_channels'), 'limit');
    assert.notEqual(limit.required, true);
    assert.equal(limit.schema.default, 10);
  });

  it('puts bearer security on every guarded route and none on the open ones, as they answer', async () => {
    assert.deepEqual(doc.components.securitySchemes.bearer, {
      type: 'http',
      scheme: 'bearer',
      description: (doc.components.securitySchemes.bearer as { description: string }).description,
    });
    for (const key of GUARDED) assert.deepEqual(operation(doc, key).security, BEARER, key);
    for (const key of OPEN) assert.deepEqual(operation(doc, key).security, [], key);
    // Every documented operation is one or the other: a new route cannot go undocumented as to its token.
    assert.deepEqual(
      operations(doc)
        .map(([key]) => key)
        .sort(),
      [...GUARDED, ...OPEN].sort(),
    );

    // And the document is what happens: without a token, the guarded routes answer 401 and the open ones do not.
    for (const [key, op] of operations(doc)) {
      const [method, url] = key.split(' ') as [string, string];
      const request: InjectOptions = { method: method.toUpperCase(), url };
      if (op.requestBody) request.payload = VALID_BODIES[key] ?? {};
      const res = await t.app.inject(request);
      if (op.security?.length) assert.equal(res.statusCode, 401, `${key} without the token`);
      else assert.notEqual(res.statusCode, 401, `${key} without the token`);
    }
  });

  it('names its component schemas, and every reference resolves', () => {
    const names = Object.keys(doc.components.schemas);
    assert.ok(names.includes('Error'), `components: ${names.join(', ')}`);
    for (const name of names) assert.doesNotMatch(name, /^def-\d+$/);
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]);
    assert.ok(refs.length > 0);
    for (const ref of refs) assert.ok(names.includes(ref as string), `$ref ${ref} resolves`);
  });

  it('declares text/event-stream for /events and the Prometheus text format for /metrics', async () => {
    assert.deepEqual(Object.keys(operation(doc, 'get /events').responses['200']?.content ?? {}), ['text/event-stream']);
    const metrics = Object.keys(operation(doc, 'get /metrics').responses['200']?.content ?? {});
    assert.equal(metrics.length, 1);
    assert.match(metrics[0] as string, /^text\/plain; version=0\.0\.4/);
    // The type the answer really has.
    const res = await t.app.inject({ url: '/metrics', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], metrics[0]);
  });

  it('gives every operation its own operationId', () => {
    const ids = operations(doc).map(([, op]) => op.operationId);
    for (const id of ids) assert.match(id ?? '', /^[a-z][A-Za-z]+$/);
    assert.equal(new Set(ids).size, ids.length);
  });
});

describe('the OpenAPI document, with no API token', () => {
  let t: TestApp;
  let doc: Document;
  before(async () => {
    t = await testApp({ ingestRateLimit: null, readRateLimit: null });
    doc = await documentOf(t);
  });
  after(() => t.close());

  it('leaves reads and /metrics open, which they are, and batch ingest and webhooks behind a token, which they always are', async () => {
    for (const key of GUARDED_WITH_TOKEN) assert.deepEqual(operation(doc, key).security, [], key);
    for (const key of ALWAYS_GUARDED) {
      assert.deepEqual(operation(doc, key).security, BEARER, key);
      const [method, url] = key.split(' ') as [string, string];
      const res = await t.app.inject({
        method: method.toUpperCase(),
        url,
        ...(method === 'post' ? { payload: VALID_BODIES[key] ?? {} } : {}),
      });
      assert.equal(res.statusCode, 403, `${key} without a configured token`);
    }
  });
});
