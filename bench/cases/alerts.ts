// Case 9: what ten alert rules cost a heartbeat: the same build with and without them (and a webhook receiver), runs
// alternated, server CPU per heartbeat compared.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BenchContext } from '../context.js';
import { meanOf, simulatedHeartbeats, type LoadResult } from '../load.js';
import { against, count, ratio, type CaseReport, type Row } from '../report.js';
import { cpuSeconds, scratchDir, startService, stop, type Listening } from '../support.js';

const WARM_UP_SECONDS = 2;
const ROUNDS = 3;
const SECRET = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;

/**
 * Ten rules as an operator writes them: on the total (every heartbeat of this load raises it, so each is looked at
 * on every heartbeat) and on channels this load does not use. One fires early in the run, and records are raised.
 */
const RULES = [
  'online > 100',
  'online > 1000000',
  'online >= 500000 for 5m',
  'online < 10 for 10m',
  'online > 2000000 hysteresis 1000',
  'online <= 1',
  'online{channel=checkout} < 5 for 10m',
  'online{channel=checkout} > 1000',
  'online{channel=lobby} >= 100 for 1m',
  'online{channel=game:eu-1} > 50 hysteresis 5',
];

interface Run extends LoadResult {
  serverCores: number;
}

const row = (measure: string, value: string, target = '', verdict: Row['verdict'] = 'info'): Row => ({
  case: '9 alerts',
  measure,
  value,
  target,
  verdict,
});

export async function alertsCase(ctx: BenchContext): Promise<CaseReport> {
  let delivered = 0;
  const receiver = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      delivered++;
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  const services: Listening[] = [];
  const sequence = { next: 0 };
  try {
    const common = ['--trust-proxy', '127.0.0.1'];
    const without = await startService(['--data-dir', scratchDir('alerts-off'), ...common]);
    services.push(without);
    const alertArgs = RULES.flatMap((rule) => ['--alert', rule]);
    const withRules = await startService([
      '--data-dir',
      scratchDir('alerts-on'),
      ...common,
      '--webhook-url',
      hookUrl,
      '--webhook-secret',
      SECRET,
      ...alertArgs,
    ]);
    services.push(withRules);
    const heartbeats = (target: Listening, seconds: number) =>
      simulatedHeartbeats(target.url, ctx.connections, seconds, sequence);
    const measured = async (target: Listening): Promise<Run> => {
      const before = cpuSeconds(target.process.pid);
      const result = await heartbeats(target, ctx.durationSeconds);
      return { ...result, serverCores: (cpuSeconds(target.process.pid) - before) / result.seconds };
    };
    await heartbeats(without, WARM_UP_SECONDS);
    await heartbeats(withRules, WARM_UP_SECONDS);
    const off: Run[] = [];
    const on: Run[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      ctx.log(`case 9: round ${round} of ${ROUNDS}: without rules, then with ten, ${ctx.durationSeconds} s each`);
      off.push(await measured(without));
      on.push(await measured(withRules));
    }
    const micros = (runs: readonly Run[]) =>
      meanOf(runs, (run) => (run.serverCores * 1e6) / Math.max(1, run.requestsPerSecond));
    const rise = micros(on) / micros(off);
    return {
      title: 'Case 9: ten alert rules on the heartbeat path',
      rows: [
        row(
          'heartbeats/s, without rules / with ten',
          `${count(meanOf(off, (r) => r.requestsPerSecond))} / ${count(meanOf(on, (r) => r.requestsPerSecond))}`,
        ),
        row('server CPU per heartbeat, without / with', `${micros(off).toFixed(1)} µs / ${micros(on).toFixed(1)} µs`),
        row('CPU per heartbeat, with / without', ratio(rise), '<= 1.02', against(rise, { max: 1.02 })),
        row('webhooks the receiver got', count(delivered)),
        row('non-2xx', count([...on, ...off].reduce((sum, run) => sum + run.non2xx, 0))),
      ],
      notes: [
        `The same build twice, production defaults, one with --webhook-url (a receiver in the benchmark answering 204) ` +
          `and ten --alert rules (${RULES.map((rule) => `\`${rule}\``).join(', ')}); ${ctx.connections} connections, ` +
          `POST /heartbeat with X-Forwarded-For cycling over 131,072 addresses, so the total rises with nearly every ` +
          `heartbeat and the total's rules and the record are looked at each time; warm-up ${WARM_UP_SECONDS} s each, ` +
          `then without, with, alternated ${ROUNDS} times (${ctx.durationSeconds} s each).`,
      ],
    };
  } finally {
    for (const service of services) await stop(service.process, 'SIGKILL');
    await new Promise<void>((resolve) => receiver.close(() => resolve()));
  }
}
