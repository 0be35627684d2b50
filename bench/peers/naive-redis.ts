// A peer of case 1: heartbeats counted the naive Redis way, ZADD to the online set and PFADD to the day's
// HyperLogLog in one pipeline per request, with no limits, no pseudonyms and no durability.
//
//   node --import tsx bench/peers/naive-redis.ts --redis-url redis://127.0.0.1:6379
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import { Redis } from 'ioredis';

const { values } = parseArgs({ options: { 'redis-url': { type: 'string' } }, strict: true });
const url = values['redis-url'];
if (url === undefined) {
  process.stderr.write('usage: naive-redis.ts --redis-url <url>\n');
  process.exit(2);
}

const redis = new Redis(url, { maxRetriesPerRequest: 1 });

// The client address from X-Forwarded-For when the connection comes from the benchmark, as the service is run.
const app = Fastify({ logger: false, trustProxy: ['127.0.0.1'] });
app.post('/heartbeat', async (request) => {
  const nowMs = Date.now();
  const day = new Date(nowMs).toISOString().slice(0, 10);
  const replies = await redis.pipeline().zadd('online', nowMs, request.ip).pfadd(`day:${day}`, request.ip).exec();
  // A pipeline resolves even when a command in it failed: the error sits in that command's reply.
  for (const [error] of replies ?? []) if (error) throw error;
  return { message: 'Heartbeat received', ip: request.ip };
});

await redis.ping();
const address = await app.listen({ host: '127.0.0.1', port: 0 });
// The line the service prints, so the benchmark starts every server alike.
process.stdout.write(`Server listening at ${address}\n`);
process.once('SIGTERM', () => {
  app.close().then(
    async () => {
      await redis.quit();
      process.exit(0);
    },
    () => process.exit(1),
  );
});
