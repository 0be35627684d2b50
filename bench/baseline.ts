// The yardstick of case 1: a bare Fastify route answering what POST /heartbeat answers, with no limiter, no identity
// and no storage.
import Fastify from 'fastify';

const app = Fastify({ logger: false, trustProxy: ['127.0.0.1'] });
app.post('/heartbeat', async (request) => ({ message: 'Heartbeat received', ip: request.ip }));

const address = await app.listen({ host: '127.0.0.1', port: 0 });
// The line the service prints (its logger is on, this one's is off), so the benchmark starts both alike.
process.stdout.write(`Server listening at ${address}\n`);
process.once('SIGTERM', () => {
  app.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
