// Case 1: heartbeat throughput of the service (production defaults) next to a bare Fastify route, and no acknowledged
// heartbeat lost to SIGKILL.
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Pseudonymizer, identityOf } from '../../src/identity.js';
import { DATABASE_FILE } from '../../src/store/sqlite.js';
import type { BenchContext } from '../context.js';
import { load, meanOf, simulatedAddress, type LoadResult } from '../load.js';
import { against, count, ms, ratio, type CaseReport, type Row } from '../report.js';
import { SECRET, cpuSeconds, scratchDir, startBaseline, startService, stop, type Listening } from '../support.js';

const WARM_UP_SECONDS = 2;
const ROUNDS = 2;

interface Run extends LoadResult {
  /** CPU the server process used during the run, in cores (1 = one core busy all along). */
  serverCores: number;
}

/** Acknowledged addresses whose pseudonym is not a row of the database (opened read-only after the kill). */
function missingFromDatabase(dataDir: string, addresses: ReadonlySet<string>): number {
  const db = new Database(join(dataDir, DATABASE_FILE), { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare<[Buffer], number>('SELECT 1 FROM identities WHERE id = ?').pluck();
    const pseudonyms = new Pseudonymizer(SECRET);
    let missing = 0;
    for (const address of addresses) {
      if (row.get(Buffer.from(pseudonyms.pseudonym(identityOf(undefined, address)), 'latin1')) === undefined) missing++;
    }
    return missing;
  } finally {
    db.close();
  }
}

export async function heartbeatCase(ctx: BenchContext): Promise<CaseReport> {
  const dataDir = scratchDir('heartbeat');
  const baseline = await startBaseline();
  let service: Listening | null = null;
  try {
    service = await startService(
      ['--data-dir', dataDir, '--trust-proxy', '127.0.0.1'],
      ctx.profileDir === null ? {} : { nodeFlags: ['--cpu-prof', '--cpu-prof-dir', ctx.profileDir] },
    );
    const acknowledged = new Set<string>();
    let okTotal = 0;
    // One sequence over all 131,072 addresses shared by every run: an address comes back only after
    // that many requests, far apart enough for the 1/s per-client limit.
    let next = 0;
    const heartbeats = (target: Listening, seconds: number, isService: boolean) =>
      load({
        url: target.url,
        connections: ctx.connections,
        seconds,
        method: 'POST',
        path: '/heartbeat',
        vary: () => {
          const address = simulatedAddress(next++);
          return { headers: { 'x-forwarded-for': address }, tag: address };
        },
        ...(isService
          ? {
              onOk: (address: string) => {
                acknowledged.add(address);
                okTotal++;
              },
            }
          : {}),
      });
    const measured = async (target: Listening, isService: boolean): Promise<Run> => {
      const cpuBefore = cpuSeconds(target.process.pid);
      const result = await heartbeats(target, ctx.durationSeconds, isService);
      return { ...result, serverCores: (cpuSeconds(target.process.pid) - cpuBefore) / result.seconds };
    };

    ctx.log(`case 1: warm-up, ${WARM_UP_SECONDS} s each`);
    await heartbeats(baseline, WARM_UP_SECONDS, false);
    await heartbeats(service, WARM_UP_SECONDS, true);
    const bare: Run[] = [];
    const ours: Run[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      ctx.log(`case 1: round ${round} of ${ROUNDS}: bare Fastify, then the service, ${ctx.durationSeconds} s each`);
      bare.push(await measured(baseline, false));
      ours.push(await measured(service, true));
    }
    // Killed the moment the load stops: whatever it acknowledged must already be on disk.
    const killSignal = ctx.profileDir === null ? 'SIGKILL' : 'SIGTERM';
    await stop(service.process, killSignal);
    const missing = missingFromDatabase(dataDir, acknowledged);

    const perRun = (runs: readonly Run[], figure: (run: Run) => number, format: (value: number) => string) =>
      `${format(meanOf(runs, figure))} (runs: ${runs.map((run) => format(figure(run))).join(', ')})`;
    const serviceRate = meanOf(ours, (run) => run.requestsPerSecond);
    const bareRate = meanOf(bare, (run) => run.requestsPerSecond);
    const serviceP99 = meanOf(ours, (run) => run.p99Ms);
    const sum = (runs: readonly Run[], figure: (run: Run) => number) =>
      runs.reduce((total, run) => total + figure(run), 0);
    const serviceNon2xx = sum(ours, (run) => run.non2xx);
    const serviceErrors = sum(ours, (run) => run.errors);
    const row = (measure: string, value: string, target = '', verdict: Row['verdict'] = 'info'): Row => ({
      case: '1 heartbeat',
      measure,
      value,
      target,
      verdict,
    });
    return {
      title: 'Case 1: heartbeat throughput vs a bare Fastify route',
      rows: [
        row(
          'requests/s, bare Fastify',
          perRun(bare, (run) => run.requestsPerSecond, count),
        ),
        row(
          'requests/s, service',
          perRun(ours, (run) => run.requestsPerSecond, count),
        ),
        row(
          'ratio service / bare Fastify',
          ratio(serviceRate / bareRate),
          '>= 0.9',
          against(serviceRate / bareRate, { min: 0.9 }),
        ),
        row(
          'p50, bare Fastify',
          perRun(bare, (run) => run.p50Ms, ms),
        ),
        row(
          'p50, service',
          perRun(ours, (run) => run.p50Ms, ms),
        ),
        row(
          'p99, bare Fastify',
          perRun(bare, (run) => run.p99Ms, ms),
        ),
        row(
          'p99, service',
          perRun(ours, (run) => run.p99Ms, ms),
          '<= 10 ms',
          against(serviceP99, { max: 10 }),
        ),
        row('non-2xx, service (both runs)', count(serviceNon2xx), '0', against(serviceNon2xx, { max: 0 })),
        row(
          'errors / timeouts, service (both runs)',
          `${count(serviceErrors)} / ${count(sum(ours, (run) => run.timeouts))}`,
          '0',
          against(serviceErrors, { max: 0 }),
        ),
        row(
          'non-2xx / errors, bare Fastify (both runs)',
          `${count(sum(bare, (run) => run.non2xx))} / ${count(sum(bare, (run) => run.errors))}`,
        ),
        row(
          'server CPU in cores, bare Fastify / service',
          `${ratio(meanOf(bare, (run) => run.serverCores))} / ${ratio(meanOf(ours, (run) => run.serverCores))}`,
        ),
        row(
          'load generator CPU in cores, bare Fastify / service',
          `${ratio(meanOf(bare, (run) => run.generatorCores))} / ${ratio(meanOf(ours, (run) => run.generatorCores))}`,
        ),
        row('heartbeats acknowledged (distinct addresses)', `${count(okTotal)} (${count(acknowledged.size)})`),
        row(`acknowledged heartbeats missing after ${killSignal}`, count(missing), '0', against(missing, { max: 0 })),
      ],
      notes: [
        `${ctx.connections} connections, POST /heartbeat without a body, X-Forwarded-For cycling over 131,072 addresses of 198.18.0.0/15; ` +
          `the service runs with production defaults (rate limits on, synchronous = FULL) plus --trust-proxy 127.0.0.1.`,
        `Warm-up ${WARM_UP_SECONDS} s each, then bare, service, bare, service (${ctx.durationSeconds} s each); figures are the mean of the two runs. ` +
          'Latencies are percentiles of every 2xx response time (autocannon hrtime, not its whole-millisecond histogram).',
        `The durability check opens the database read-only after the ${killSignal} and looks up the pseudonym of every address answered 200, warm-up included.` +
          (ctx.profileDir === null
            ? ''
            : ` With --profile the service is stopped by SIGTERM so it can write its CPU profile to ${ctx.profileDir}.`),
        'autocannon runs in the bench process on the same machine, so it takes CPU the server could otherwise use.',
      ],
    };
  } finally {
    await stop(baseline.process);
    if (service) await stop(service.process, 'SIGKILL');
  }
}
