// A peer of case 1: heartbeats counted the naive durable way, one SQLite upsert per request (WAL, synchronous = FULL),
// with no limits, no pseudonyms and no batching: what the service's write path has to beat.
//
//   node --import tsx bench/peers/naive-sqlite.ts --database <file>
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import Fastify from 'fastify';

const { values } = parseArgs({ options: { database: { type: 'string' } }, strict: true });
if (values.database === undefined) {
  process.stderr.write('usage: naive-sqlite.ts --database <file>\n');
  process.exit(2);
}

const db = new Database(values.database);
db.pragma('journal_mode = WAL');
// FULL: each answered heartbeat is on disk (fsync of the WAL per commit), as the service promises.
db.pragma('synchronous = FULL');
db.exec('CREATE TABLE IF NOT EXISTS last_seen (address TEXT PRIMARY KEY, last_seen_ms INTEGER NOT NULL) WITHOUT ROWID');
const upsert = db.prepare<[string, number]>(
  'INSERT INTO last_seen (address, last_seen_ms) VALUES (?, ?) ' +
    'ON CONFLICT (address) DO UPDATE SET last_seen_ms = excluded.last_seen_ms',
);

// The client address from X-Forwarded-For when the connection comes from the benchmark, as the service is run.
const app = Fastify({ logger: false, trustProxy: ['127.0.0.1'] });
app.post('/heartbeat', async (request) => {
  upsert.run(request.ip, Date.now());
  return { message: 'Heartbeat received', ip: request.ip };
});

const address = await app.listen({ host: '127.0.0.1', port: 0 });
// The line the service prints, so the benchmark starts every server alike.
process.stdout.write(`Server listening at ${address}\n`);
process.once('SIGTERM', () => {
  app.close().then(
    () => {
      db.close();
      process.exit(0);
    },
    () => process.exit(1),
  );
});
