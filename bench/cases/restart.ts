// Case 4: a restart of the service on 1M known / 100k online identities: how long until ready, and the online count
// unchanged.
import type { BenchContext } from '../context.js';
import { get } from '../load.js';
import { against, count, type CaseReport, type Row } from '../report.js';
import { sleep, startService, stop, type Listening } from '../support.js';

const POLL_INTERVAL_MS = 5;
const READY_TIMEOUT_MS = 60_000;

async function onlineCount(url: string): Promise<number> {
  const { status, body } = await get(`${url}/online_clients`);
  const parsed: unknown = JSON.parse(body);
  const value =
    typeof parsed === 'object' && parsed !== null
      ? (parsed as Record<string, unknown>).online_clients_count
      : undefined;
  if (status !== 200 || typeof value !== 'number') throw new Error(`GET /online_clients answered ${status}: ${body}`);
  return value;
}

/** Polls GET /readyz every 5 ms until a 200, or until `gaveUp()`; resolves with the time of that answer. */
async function firstReady(port: number, gaveUp: () => boolean): Promise<number> {
  const deadlineMs = performance.now() + READY_TIMEOUT_MS;
  while (performance.now() < deadlineMs && !gaveUp()) {
    try {
      if ((await get(`http://127.0.0.1:${port}/readyz`, 1000)).status === 200) return performance.now();
    } catch {
      // Not listening yet.
    }
    await sleep(POLL_INTERVAL_MS);
  }
  throw new Error(`no 200 from /readyz within ${READY_TIMEOUT_MS} ms`);
}

export async function restartCase(ctx: BenchContext): Promise<CaseReport> {
  const known = Math.min(1_000_000, ctx.known);
  const online = Math.floor(known / 10);
  const dataDir = await ctx.seeds.get(known, online);
  let second: Listening | null = null;
  const first = await startService(['--data-dir', dataDir]);
  try {
    const before = await onlineCount(first.url);
    ctx.log(`case 4: SIGTERM, then a new process on port ${first.port}`);
    const exit = await stop(first.process, 'SIGTERM', 15_000);
    const spawnedMs = performance.now();
    let failed = false;
    const starting = startService(['--data-dir', dataDir], { port: first.port }).catch((error: unknown) => {
      failed = true;
      throw error;
    });
    const readyMs = await firstReady(first.port, () => failed).catch(async (error: unknown) => {
      second = await starting; // if it failed, its error says more than the poll's
      throw error;
    });
    second = await starting;
    const readyLine = (await second.process.waitForLine(/"msg":"online-stats ready"/, 10_000)).input;
    const startupMs: unknown = (JSON.parse(readyLine) as Record<string, unknown>).startupMs;
    const after = await onlineCount(second.url);
    const tookMs = readyMs - spawnedMs;
    const row = (measure: string, value: string, target = '', verdict: Row['verdict'] = 'info'): Row => ({
      case: '4 restart',
      measure,
      value,
      target,
      verdict,
    });
    return {
      title: 'Case 4: restart',
      rows: [
        row(
          'exit code after SIGTERM',
          `${exit.code ?? exit.signal}${exit.forced ? ' (SIGKILLed after 15 s)' : ''}`,
          '0',
          exit.code === 0 && !exit.forced ? 'pass' : 'FAIL',
        ),
        row('spawn to first 200 from GET /readyz', `${count(tookMs)} ms`, '<= 3000 ms', against(tookMs, { max: 3000 })),
        row(
          'startupMs of the "online-stats ready" log line',
          typeof startupMs === 'number' ? `${count(startupMs)} ms` : `missing: ${readyLine}`,
        ),
        row(
          'online before / after the restart',
          `${count(before)} / ${count(after)}`,
          'after == before',
          after === before ? 'pass' : 'FAIL',
        ),
      ],
      notes: [
        `${count(known)} known identities, ${count(online)} online, production defaults. The new process listens on the port the old one used; ` +
          `/readyz is polled every ${POLL_INTERVAL_MS} ms from the spawn, so the time includes starting Node.js and loading the modules.`,
      ],
    };
  } finally {
    await stop(first.process, 'SIGKILL');
    if (second) await stop(second.process);
  }
}
