// Case 6: the FastAPI demo (bench/peers/fastapi_demo.py) and the service under the same heartbeat load, on the same
// users.
import { spawnSync } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext } from '../context.js';
import { get, load, simulatedAddress, type LoadResult } from '../load.js';
import { count, ms, ratio, type CaseReport, type Row } from '../report.js';
import {
  CLI,
  REPO_ROOT,
  SECRET,
  freePort,
  runToEnd,
  scratchDir,
  sleep,
  spawnTracked,
  startService,
  stop,
  type Tracked,
} from '../support.js';

/** Debian's interpreter, where apt installs fastapi and uvicorn (not a pyenv shim). */
const PYTHON = '/usr/bin/python3';
const INSTALL_HINT = 'apt-get install -y python3-fastapi python3-uvicorn';
const SIZES = [5000, 100_000];
const WARM_UP_SECONDS = 2;
const START_TIMEOUT_MS = 60_000;
const DAY_MS = 86_400_000;

/**
 * The demo's users_data.json: N addresses last seen over the past day, as naive UTC ISO times with microseconds
 * (datetime.isoformat()).
 */
function usersData(users: number, nowMs: number): string {
  const entries: string[] = [];
  for (let n = 0; n < users; n++) {
    const seen = new Date(nowMs - 1000 - Math.floor((n * (DAY_MS - 2000)) / users));
    entries.push(`${JSON.stringify(simulatedAddress(n))}: "${seen.toISOString().slice(0, 23)}000"`);
  }
  return `{${entries.join(', ')}}`;
}

/** Waits until the demo answers (GET /openapi.json is not rate-limited), or throws if it exits or takes too long. */
async function demoReady(demo: Tracked, port: number): Promise<void> {
  const deadlineMs = performance.now() + START_TIMEOUT_MS;
  let exited = false;
  void demo.exited.then(() => (exited = true));
  while (!exited && performance.now() < deadlineMs) {
    try {
      if ((await get(`http://127.0.0.1:${port}/openapi.json`, 2000)).status === 200) return;
    } catch {
      // Still importing.
    }
    await sleep(50);
  }
  throw new Error(`the FastAPI demo did not answer within ${START_TIMEOUT_MS} ms:\n${demo.tail()}`);
}

function heartbeats(url: string, ctx: BenchContext, seconds: number): Promise<LoadResult> {
  let next = 0;
  return load({
    url,
    connections: ctx.connections,
    seconds,
    method: 'POST',
    path: '/heartbeat',
    vary: () => ({ headers: { 'x-forwarded-for': simulatedAddress(next++) } }),
  });
}

async function demoRun(ctx: BenchContext, dir: string): Promise<LoadResult> {
  const port = await freePort();
  // uvicorn believes X-Forwarded-For from 127.0.0.1 by default, so the demo's 1/s per-address limit sees distinct
  // clients.
  const demo = spawnTracked(
    'FastAPI demo',
    PYTHON,
    ['-m', 'uvicorn', 'main:app', '--host', '127.0.0.1', '--port', String(port)],
    dir,
  );
  try {
    await demoReady(demo, port);
    await heartbeats(`http://127.0.0.1:${port}`, ctx, WARM_UP_SECONDS);
    return await heartbeats(`http://127.0.0.1:${port}`, ctx, ctx.durationSeconds);
  } finally {
    // Nothing of it is kept: no need to let it finish the requests still queued.
    await stop(demo, 'SIGKILL');
  }
}

async function ourRun(ctx: BenchContext, usersFile: string): Promise<LoadResult> {
  const dataDir = scratchDir('peer-ours');
  await runToEnd(
    'online-stats import',
    process.execPath,
    [CLI, 'import', usersFile, '--data-dir', dataDir, '--identity-secret', SECRET],
    120_000,
  );
  const service = await startService(['--data-dir', dataDir, '--trust-proxy', '127.0.0.1']);
  try {
    await heartbeats(service.url, ctx, WARM_UP_SECONDS);
    return await heartbeats(service.url, ctx, ctx.durationSeconds);
  } finally {
    await stop(service.process);
  }
}

const summary = (run: LoadResult) =>
  `${count(run.requestsPerSecond)} req/s, p50 ${ms(run.p50Ms)}, p99 ${ms(run.p99Ms)}, non-2xx ${count(run.non2xx)}, errors ${count(run.errors)}, timeouts ${count(run.timeouts)}`;

export async function peerCase(ctx: BenchContext): Promise<CaseReport> {
  const title = 'Case 6: the FastAPI demo as a peer';
  const check = spawnSync(PYTHON, ['-c', 'import fastapi, uvicorn'], { encoding: 'utf8', timeout: 30_000 });
  if (check.status !== 0) {
    const why = (check.stderr || check.error?.message || `exit ${check.status}`).trim().split('\n').pop() ?? '';
    return {
      title,
      rows: [
        {
          case: '6 FastAPI demo',
          measure: 'skipped',
          value: `${PYTHON} cannot import fastapi, uvicorn (${why})`,
          target: '',
          verdict: 'info',
        },
      ],
      notes: [`To run it: ${INSTALL_HINT} (Debian's packages, for ${PYTHON}).`],
    };
  }
  const rows: Row[] = [];
  for (const users of SIZES) {
    const dir = scratchDir(`peer-${users}`);
    copyFileSync(join(REPO_ROOT, 'bench', 'peers', 'fastapi_demo.py'), join(dir, 'main.py'));
    writeFileSync(join(dir, 'users_data.json'), usersData(users, Date.now()));
    // The demo rewrites its users_data.json: ours imports a pristine copy.
    const usersFile = join(dir, 'users_data.initial.json');
    copyFileSync(join(dir, 'users_data.json'), usersFile);
    ctx.log(`case 6: ${count(users)} users: the FastAPI demo`);
    const demo = await demoRun(ctx, dir);
    ctx.log(`case 6: ${count(users)} users: online-stats`);
    const ours = await ourRun(ctx, usersFile);
    const name = `6 peer, ${count(users)} users`;
    rows.push(
      { case: name, measure: 'FastAPI demo', value: summary(demo), target: '', verdict: 'info' },
      { case: name, measure: 'online-stats', value: summary(ours), target: '', verdict: 'info' },
      {
        case: name,
        measure: 'ratio online-stats / demo, req/s',
        value: ratio(ours.requestsPerSecond / demo.requestsPerSecond),
        target: '',
        verdict: 'info',
      },
    );
  }
  return {
    title,
    rows,
    notes: [
      `Both under the load of case 1: ${ctx.connections} connections, POST /heartbeat, X-Forwarded-For cycling over 131,072 addresses; ${WARM_UP_SECONDS} s warm-up, then ${ctx.durationSeconds} s.`,
      `The demo: ${PYTHON} -m uvicorn main:app (defaults: one worker, access log on) in a directory holding its users_data.json of N addresses seen within the last day. ` +
        'online-stats: `online-stats import` of the same file, then serve with production defaults and --trust-proxy 127.0.0.1.',
      "The issue sets no target here; the demo's README measured 17 heartbeats/s at 100,000 users (it rewrites the whole JSON file on every heartbeat).",
    ],
  };
}
