// The dashboard page at /, its assets under /dashboard/, and the browser build of the client SDK at /client.js.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppDeps } from '../http/deps.js';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** The page reads its own origin only, runs no inline code and cannot be framed. */
const PAGE_SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

/** A file held in memory, with its gzip form and a content hash for ETag and cache-busting URLs. */
interface Asset {
  body: Buffer;
  gzipped: Buffer;
  type: string;
  hash: string;
  etag: string;
}

function asset(body: Buffer, type: string): Asset {
  const hash = createHash('sha256').update(body).digest('base64url').slice(0, 16);
  return { body, gzipped: gzipSync(body, { level: 9 }), type, hash, etag: `"${hash}"` };
}

// The compiled SDK: next to dist/src when running the build, under dist/ when running the sources (tests, tsx).
const CLIENT_BUILD_CANDIDATES = ['../../client/index.js', '../../dist/client/index.js'];

function loadClientBuild(): Asset | null {
  for (const candidate of CLIENT_BUILD_CANDIDATES) {
    const path = fileURLToPath(new URL(candidate, import.meta.url));
    if (!existsSync(path)) continue;
    // The source map is not served, so the comment pointing at it would only cause a 404 in developer tools.
    const text = readFileSync(path, 'utf8').replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n');
    return asset(Buffer.from(text), CONTENT_TYPES['.js'] as string);
  }
  return null;
}

function send(request: FastifyRequest, reply: FastifyReply, file: Asset, cacheControl: string): FastifyReply {
  reply
    .header('content-type', file.type)
    .header('etag', file.etag)
    .header('cache-control', cacheControl)
    .header('vary', 'accept-encoding');
  if (request.headers['if-none-match'] === file.etag) return reply.code(304).send();
  if (/\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''))) {
    return reply.header('content-encoding', 'gzip').send(file.gzipped);
  }
  return reply.send(file.body);
}

export const dashboardRoutes: FastifyPluginAsyncTypebox<AppDeps> = async (app) => {
  const dir = fileURLToPath(new URL('../dashboard/', import.meta.url));
  const assets = new Map<string, Asset>();
  for (const name of readdirSync(dir)) {
    const type = CONTENT_TYPES[extname(name)];
    if (type && name !== 'index.html') assets.set(name, asset(readFileSync(`${dir}${name}`), type));
  }
  // Asset URLs in the page carry their content hash, so browsers may keep them for a year and still see a new release.
  const html = readFileSync(`${dir}index.html`, 'utf8').replace(/\/dashboard\/([\w.-]+)/g, (url, name: string) => {
    const file = assets.get(name);
    return file ? `${url}?v=${file.hash}` : url;
  });
  const page = asset(Buffer.from(html), CONTENT_TYPES['.html'] as string);
  const client = loadClientBuild();
  if (!client) app.log.warn('the client SDK is not built (npm run build): /client.js will answer 404');

  app.get('/', { schema: { hide: true } }, async (request, reply) => {
    reply.headers(PAGE_SECURITY_HEADERS);
    return send(request, reply, page, 'no-cache');
  });

  app.get<{ Params: { name: string }; Querystring: { v?: string } }>(
    '/dashboard/:name',
    { schema: { hide: true } },
    async (request, reply) => {
      const file = assets.get(request.params.name);
      if (!file) return reply.callNotFound();
      reply.header('x-content-type-options', 'nosniff');
      const versioned = request.query.v === file.hash;
      return send(request, reply, file, versioned ? 'public, max-age=31536000, immutable' : 'no-cache');
    },
  );

  app.get('/client.js', { schema: { hide: true } }, async (request, reply) => {
    if (!client) return reply.callNotFound();
    // Public code: any page may load it, and module scripts from another origin are fetched with CORS.
    reply
      .header('access-control-allow-origin', '*')
      .header('cross-origin-resource-policy', 'cross-origin')
      .header('x-content-type-options', 'nosniff');
    return send(request, reply, client, 'public, max-age=3600');
  });
};
