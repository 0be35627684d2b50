// The dashboard page at /, its assets under /dashboard/, and the browser build of the client SDK at /client.js.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants as zlib, gzipSync } from 'node:zlib';
import { negotiate } from '@fastify/accept-negotiator';
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

/**
 * A file held in memory, compressed once at start, with a content hash for ETag and cache-busting
 * URLs. Served from memory rather than with @fastify/static because the page is rewritten at start
 * (its asset URLs carry those hashes), so it exists on no disk to serve.
 */
interface Asset {
  encoded: Record<Encoding, Buffer>;
  type: string;
  hash: string;
  etag: string;
}

const ENCODINGS = ['br', 'gzip', 'identity'] as const;
type Encoding = (typeof ENCODINGS)[number];

function asset(body: Buffer, type: string): Asset {
  const hash = createHash('sha256').update(body).digest('base64url').slice(0, 16);
  const br = brotliCompressSync(body, { params: { [zlib.BROTLI_PARAM_QUALITY]: zlib.BROTLI_MAX_QUALITY } });
  return { encoded: { br, gzip: gzipSync(body, { level: 9 }), identity: body }, type, hash, etag: `"${hash}"` };
}

/**
 * If-None-Match as RFC 9110 section 13.1.2 has it: `*`, or a list of tags compared weakly (W/"x"
 * matches "x"), so a proxy that weakened the tag, or a client naming several, still gets its 304.
 */
export function noneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}

/**
 * Files of the page's one package, uPlot (its charts), served under /dashboard/ like the page's own and resolved
 * where npm installed it. The minified browser build, not the ES module one: uPlot ships no minified ES module,
 * and the plain one is twice the size (42 KB gzipped, against 22).
 */
const PACKAGE_ASSETS: Record<string, string> = {
  'uplot.min.js': 'uplot/dist/uPlot.iife.min.js',
  'uplot.min.css': 'uplot/dist/uPlot.min.css',
};

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
  if (noneMatch(request.headers['if-none-match'], file.etag)) return reply.code(304).send();
  // q-values count: "gzip;q=0, identity" refuses gzip. Nothing acceptable named: the plain file.
  const header = request.headers['accept-encoding'];
  const encoding = (header === undefined ? null : negotiate(header, [...ENCODINGS])) ?? 'identity';
  if (encoding !== 'identity') reply.header('content-encoding', encoding);
  return reply.send(file.encoded[encoding]);
}

export const dashboardRoutes: FastifyPluginAsyncTypebox<AppDeps> = async (app) => {
  const dir = fileURLToPath(new URL('../dashboard/', import.meta.url));
  const assets = new Map<string, Asset>();
  for (const name of readdirSync(dir)) {
    const type = CONTENT_TYPES[extname(name)];
    if (type && name !== 'index.html') assets.set(name, asset(readFileSync(`${dir}${name}`), type));
  }
  const require = createRequire(import.meta.url);
  for (const [name, file] of Object.entries(PACKAGE_ASSETS))
    assets.set(name, asset(readFileSync(require.resolve(file)), CONTENT_TYPES[extname(name)] as string));
  // Asset URLs in the page carry their content hash, so browsers may keep them for a year and still see a new release.
  // Under a host's prefix, the page's links point there too.
  const html = readFileSync(`${dir}index.html`, 'utf8')
    .replace(/\/dashboard\/([\w.-]+)/g, (url, name: string) => {
      const file = assets.get(name);
      return `${app.prefix}${file ? `${url}?v=${file.hash}` : url}`;
    })
    .replace('href="/docs"', `href="${app.prefix}/docs"`);
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
