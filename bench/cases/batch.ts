// Case 5: batch ingest, POST /heartbeats of 1000 client ids each, in client heartbeats per second.
import type { BenchContext } from '../context.js';
import { load } from '../load.js';
import { against, count, ms, ratio, type CaseReport, type Row } from '../report.js';
import { cpuSeconds, scratchDir, startService, stop } from '../support.js';

const IDS_PER_BATCH = 1000;
const ID_POOL = 1_000_000;
const CONNECTIONS = 8;
const WARM_UP_SECONDS = 2;
const INGEST_TOKEN = 'bench-ingest-token-0123456789';

export async function batchCase(ctx: BenchContext): Promise<CaseReport> {
  const service = await startService([
    '--data-dir',
    scratchDir('batch'),
    '--rate-limit',
    'off',
    '--address-rate-limit',
    'off',
    '--batch-rate-limit',
    'off',
    '--ingest-token',
    INGEST_TOKEN,
  ]);
  try {
    let next = 0;
    const batches = (seconds: number) =>
      load({
        url: service.url,
        connections: CONNECTIONS,
        seconds,
        method: 'POST',
        path: '/heartbeats',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${INGEST_TOKEN}` },
        vary: () => {
          const ids = Array.from({ length: IDS_PER_BATCH }, () => `client-${next++ % ID_POOL}`);
          return { body: JSON.stringify({ client_ids: ids }) };
        },
      });
    ctx.log(`case 5: warm-up ${WARM_UP_SECONDS} s, then ${ctx.durationSeconds} s`);
    await batches(WARM_UP_SECONDS);
    const cpuBefore = cpuSeconds(service.process.pid);
    const run = await batches(ctx.durationSeconds);
    const serverCores = (cpuSeconds(service.process.pid) - cpuBefore) / run.seconds;
    const heartbeatsPerSecond = (run.ok * IDS_PER_BATCH) / run.seconds;
    const row = (measure: string, value: string, target = '', verdict: Row['verdict'] = 'info'): Row => ({
      case: '5 batch ingest',
      measure,
      value,
      target,
      verdict,
    });
    return {
      title: 'Case 5: batch ingest',
      rows: [
        row(
          'client heartbeats/s',
          count(heartbeatsPerSecond),
          '>= 250,000',
          against(heartbeatsPerSecond, { min: 250_000 }),
        ),
        row(
          'server CPU per id (all threads: the request, and the fold on its worker)',
          `${((serverCores * 1e6) / heartbeatsPerSecond).toFixed(1)} µs`,
          '<= 4 µs',
          against((serverCores * 1e6) / heartbeatsPerSecond, { max: 4 }),
        ),
        row('requests/s', count(run.requestsPerSecond)),
        row('p50 / p99', `${ms(run.p50Ms)} / ${ms(run.p99Ms)}`),
        row('CPU in cores, server / load generator', `${ratio(serverCores)} / ${ratio(run.generatorCores)}`),
        row('non-2xx', count(run.non2xx), '0', against(run.non2xx, { max: 0 })),
        row('errors / timeouts', `${count(run.errors)} / ${count(run.timeouts)}`, '0', against(run.errors, { max: 0 })),
      ],
      notes: [
        `${CONNECTIONS} connections, POST /heartbeats with {"client_ids": [${IDS_PER_BATCH} ids]} cycling over ${count(ID_POOL)} ids (client-<n>), ` +
          `empty data dir, --ingest-token set, --rate-limit off --address-rate-limit off --batch-rate-limit off; ${WARM_UP_SECONDS} s warm-up, then ${ctx.durationSeconds} s. Heartbeats/s = 2xx × ${IDS_PER_BATCH} / seconds.`,
      ],
    };
  } finally {
    await stop(service.process);
  }
}
