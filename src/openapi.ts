// The OpenAPI document's options for @fastify/swagger: info, servers, the bearer scheme, component names, and the one
// fact about request bodies that route schemas cannot carry.
import type { FastifyDynamicSwaggerOptions } from '@fastify/swagger';

interface Operation {
  requestBody?: { required?: boolean; content?: Record<string, { schema?: { required?: unknown } }> };
}

/**
 * @fastify/swagger marks every request body required, since Fastify refuses a missing body when a
 * route has a body schema. The routes with a body schema (routes/ingest.ts, routes/webhooks.ts) take a
 * missing body as `{}`, so a body that `{}` satisfies (one that requires no property) may be left out:
 * `POST /heartbeat` with no body is a heartbeat.
 */
function markOptionalBodies(document: Record<string, unknown>): void {
  const paths = (document.paths ?? {}) as Record<string, Record<string, Operation>>;
  for (const item of Object.values(paths)) {
    for (const operation of Object.values(item)) {
      const body = operation.requestBody;
      if (body === undefined) continue;
      const schemas = Object.values(body.content ?? {}).map((media) => media.schema ?? {});
      const needsNothing = schemas.every((schema) => !Array.isArray(schema.required) || schema.required.length === 0);
      if (needsNothing) body.required = false;
    }
  }
}

export function openapiOptions(): FastifyDynamicSwaggerOptions {
  return {
    openapi: {
      info: {
        title: 'online-stats',
        version: '0.1.0',
        description: 'How many users are online now and how many were active over the last days.',
        license: { name: 'MIT', url: 'https://opensource.org/licenses/MIT' },
      },
      // Relative: the service that served this document, wherever it is deployed.
      servers: [{ url: '/', description: 'This service' }],
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description:
              'The API token (--api-token), needed by reads and /metrics when one is configured; batch ingest also ' +
              'takes the ingest token (--ingest-token).',
          },
        },
      },
    },
    // Shared schemas are components named by their $id ("Error"), not numbered def-0, def-1, ...,
    // which change whenever a schema is added and so make poor names for generated clients.
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
    },
    transformObject: (documentObject) => {
      if (!('openapiObject' in documentObject)) return documentObject.swaggerObject;
      markOptionalBodies(documentObject.openapiObject);
      return documentObject.openapiObject;
    },
  };
}
