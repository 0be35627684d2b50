// Heartbeat load with wrk (one thread, its own process) when it is installed, so the load generator does not share
// the bench process's event loop, with results in the LoadResult shape of bench/load.ts.
import { accessSync, constants, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { SIMULATED_CLIENTS, type LoadResult } from './load.js';
import { scratchDir, spawnTracked, stop } from './support.js';

/** wrk's own timeout is 2 s; autocannon's is 10 s, and both generators should call the same thing a timeout. */
const TIMEOUT_SECONDS = 10;
/** Beyond the run itself: connecting, the summary, and a machine slowed down by the servers under load. */
const GRACE_MS = 30_000;
/** USER_HZ, the unit of utime and stime in /proc/<pid>/stat (what cpuSeconds in bench/support.ts assumes too). */
const CLOCK_TICKS_PER_SECOND = 100;

/** The first `wrk` on PATH, or null: then the benchmark falls back to autocannon. */
export function findWrk(): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, 'wrk');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here: the next directory.
    }
  }
  return null;
}

// LuaJIT (wrk's Lua) has no bit operators without the bit library, so the address of simulatedAddress() in
// bench/load.ts is built with math.floor and %. done() runs in wrk's main thread after the worker joined, so
// /proc/self/stat then holds the whole process's CPU, read before wrk exits and its /proc entry goes away.
const scriptText = (
  REQUEST: string,
) => `-- bench/wrk.ts: POST /heartbeat, each request from the next simulated client of 198.18.0.0/15, starting
-- at the offset given after "--"; done() prints one JSON line for bench/wrk.ts to parse.
local CLIENTS = ${SIMULATED_CLIENTS}
local n = 0

function init(args)
  n = tonumber(args[1]) or 0
end

${REQUEST}
local function cpu_ticks()
  local file = io.open("/proc/self/stat", "r")
  if file == nil then return -1 end
  local stat = file:read("*a")
  file:close()
  local fields = {}
  for field in string.gmatch(stat:match(".*%) (.*)") or "", "%S+") do fields[#fields + 1] = field end
  return (tonumber(fields[12]) or -1) + (tonumber(fields[13]) or 0)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"wrk":1,"requests":%d,"durationUs":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50Us":%.1f,"p99Us":%.1f,"cpuTicks":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50.0), latency:percentile(99.0), cpu_ticks()))
  io.flush()
end
`;

interface Summary {
  requests: number;
  durationUs: number;
  connect: number;
  read: number;
  write: number;
  /** Responses with a status of 400 and up (wrk counts no other status as an error). */
  status: number;
  timeout: number;
  p50Us: number;
  p99Us: number;
  /** -1 when /proc could not be read. */
  cpuTicks: number;
}

const SUMMARY = /^\{"wrk":1,.*\}$/;

const HEARTBEAT_REQUEST = `function request()
  local i = n % CLIENTS
  n = n + 1
  local address = "198." .. (18 + math.floor(i / 65536)) .. "." .. (math.floor(i / 256) % 256) .. "." .. (i % 256)
  return wrk.format("POST", "/heartbeat", { ["X-Forwarded-For"] = address })
end
`;

/** GETs of `prefix` and a number counting up from 0 and around `count`, e.g. "/analytics/concurrency?channel=ch-". */
const getRequest = (prefix: string, count: number) => `function request()
  local i = n % ${count}
  n = n + 1
  return wrk.format("GET", ${JSON.stringify(prefix)} .. i)
end
`;

const scripts = new Map<string, string>();

function script(request: string): string {
  let path = scripts.get(request);
  if (path === undefined) {
    path = join(scratchDir('wrk'), `load-${scripts.size}.lua`);
    writeFileSync(path, scriptText(request));
    scripts.set(request, path);
  }
  return path;
}

/** Runs wrk (one thread) with `request` for `seconds` (whole, at least 1: wrk takes no fractions); its summary. */
async function runWrk(
  wrk: string,
  url: string,
  connections: number,
  seconds: number,
  request: string,
  scriptArgs: readonly string[] = [],
): Promise<Summary> {
  const wholeSeconds = Math.max(1, Math.round(seconds));
  const args = ['-t1', `-c${connections}`, `-d${wholeSeconds}s`, '--timeout', `${TIMEOUT_SECONDS}s`, '--latency'];
  args.push('-s', script(request), url);
  if (scriptArgs.length > 0) args.push('--', ...scriptArgs);
  const tracked = spawnTracked('wrk', wrk, args);
  let line: string;
  try {
    line = (await tracked.waitForLine(SUMMARY, wholeSeconds * 1000 + GRACE_MS))[0];
  } catch (error) {
    await stop(tracked, 'SIGKILL');
    throw error;
  }
  const exit = await tracked.exited;
  if (exit.code !== 0) throw new Error(`wrk exited ${exit.code ?? exit.signal}:\n${tracked.tail()}`);
  return JSON.parse(line) as Summary;
}

/**
 * Heartbeats from simulated clients for `seconds`, continuing the address sequence that bench/load.ts's runs share;
 * `sequence.next` moves past every address this run may have sent.
 */
export async function wrkHeartbeats(
  wrk: string,
  url: string,
  connections: number,
  seconds: number,
  sequence: { next: number },
): Promise<LoadResult> {
  const offset = sequence.next % SIMULATED_CLIENTS;
  const summary = await runWrk(wrk, url, connections, seconds, HEARTBEAT_REQUEST, [String(offset)]);
  // Every request wrk sent took the next address: the completed ones, the failed ones, and up to one in flight on
  // each connection when the time ran out.
  sequence.next += summary.requests + errorsOf(summary) + connections;
  return resultOf(summary);
}

const errorsOf = (summary: Summary): number => summary.connect + summary.read + summary.write + summary.timeout;

/** wrk's summary in the LoadResult shape of bench/load.ts. */
function resultOf(summary: Summary): LoadResult {
  const runSeconds = summary.durationUs / 1e6;
  const ok = summary.requests - summary.status;
  return {
    seconds: runSeconds,
    responses: summary.requests,
    ok,
    non2xx: summary.status,
    errors: errorsOf(summary),
    timeouts: summary.timeout,
    requestsPerSecond: summary.requests / runSeconds,
    okPerSecond: ok / runSeconds,
    generatorCores: summary.cpuTicks < 0 ? 0 : summary.cpuTicks / CLOCK_TICKS_PER_SECOND / runSeconds,
    p50Ms: summary.p50Us / 1000,
    p99Ms: summary.p99Us / 1000,
  };
}

/**
 * GETs of `prefix` followed by 0, 1, ... `count` - 1 and around again, for `seconds`, from `connections`
 * connections; the same figures as wrkHeartbeats.
 */
export async function wrkGets(
  wrk: string,
  url: string,
  connections: number,
  seconds: number,
  prefix: string,
  count: number,
): Promise<LoadResult> {
  return resultOf(await runWrk(wrk, url, connections, seconds, getRequest(prefix, count)));
}
