// HTTP load on 127.0.0.1 with autocannon, with latency percentiles from each response's own timer (autocannon's
// histogram keeps whole milliseconds).
import { request as httpRequest } from 'node:http';
import autocannon from 'autocannon';

/**
 * Simulated clients: distinct addresses of the benchmarking range 198.18.0.0/15, only ever written into
 * X-Forwarded-For.
 */
export const SIMULATED_CLIENTS = 131_072;

export function simulatedAddress(n: number): string {
  const i = n % SIMULATED_CLIENTS;
  return `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
}

/** What varies from one request to the next; `tag` comes back to `onOk` when that request is answered 2xx. */
export interface Variation {
  path?: string;
  headers?: Record<string, string>;
  body?: string;
  tag?: string;
}

export interface LoadSpec {
  url: string;
  connections: number;
  /** Run this long, in seconds, unless `amount` is given. */
  seconds?: number;
  /** Or send this many requests in all. */
  amount?: number;
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  vary?: () => Variation;
  onOk?: (tag: string) => void;
}

export interface LoadResult {
  seconds: number;
  responses: number;
  ok: number;
  non2xx: number;
  /** Connection errors, timeouts included. */
  errors: number;
  timeouts: number;
  requestsPerSecond: number;
  okPerSecond: number;
  /**
   * CPU this process (the load generator) used, in cores: near 1 means the generator, not the server, may be the limit.
   */
  generatorCores: number;
  /** Of 2xx responses, from the high-resolution time autocannon takes per request. */
  p50Ms: number;
  p99Ms: number;
}

/** A growable array of doubles: a million samples without a million boxed numbers. */
class Samples {
  private values = new Float64Array(1 << 16);
  length = 0;
  push(value: number): void {
    if (this.length === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2);
      bigger.set(this.values);
      this.values = bigger;
    }
    this.values[this.length++] = value;
  }
  /** Nearest-rank percentiles, `q` in 0..1. */
  percentiles(...qs: number[]): number[] {
    if (this.length === 0) return qs.map(() => Number.NaN);
    const sorted = this.values.slice(0, this.length).sort();
    return qs.map((q) => sorted[Math.min(this.length - 1, Math.max(0, Math.ceil(q * this.length) - 1))] as number);
  }
}

export function load(spec: LoadSpec): Promise<LoadResult> {
  const { vary, onOk } = spec;
  const latencies = new Samples();
  const request: autocannon.Request = {
    method: spec.method,
    path: spec.path,
    ...(spec.headers ? { headers: spec.headers } : {}),
  };
  if (vary) {
    request.setupRequest = (params, context) => {
      const variation = vary();
      if (variation.path !== undefined) params.path = variation.path;
      if (variation.headers) params.headers = { ...params.headers, ...variation.headers };
      if (variation.body !== undefined) params.body = variation.body;
      (context as { tag?: string | undefined }).tag = variation.tag;
      return params;
    };
  }
  if (onOk) {
    request.onResponse = (status, _body, context) => {
      const { tag } = context as { tag?: unknown };
      if (status >= 200 && status < 300 && typeof tag === 'string') onOk(tag);
    };
  }
  return new Promise((resolve, reject) => {
    const startedMs = performance.now();
    const cpuBefore = process.cpuUsage();
    const instance = autocannon(
      {
        url: spec.url,
        connections: spec.connections,
        ...(spec.amount !== undefined ? { amount: spec.amount } : { duration: spec.seconds ?? 10 }),
        requests: [request],
      },
      (error, result) => {
        if (error) return reject(error instanceof Error ? error : new Error(String(error)));
        const seconds = (performance.now() - startedMs) / 1000;
        const cpu = process.cpuUsage(cpuBefore);
        const responses = Object.values(result.statusCodeStats ?? {}).reduce((sum, { count }) => sum + (count ?? 0), 0);
        const ok = responses - result.non2xx;
        const [p50Ms, p99Ms] = latencies.percentiles(0.5, 0.99);
        resolve({
          seconds,
          responses,
          ok,
          non2xx: result.non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          requestsPerSecond: responses / seconds,
          okPerSecond: ok / seconds,
          generatorCores: (cpu.user + cpu.system) / 1e6 / seconds,
          p50Ms: p50Ms as number,
          p99Ms: p99Ms as number,
        });
      },
    );
    instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTimeMs);
    });
  });
}

/** The mean of one figure over several runs. */
export const meanOf = <R>(runs: readonly R[], figure: (run: R) => number): number =>
  runs.reduce((sum, run) => sum + figure(run), 0) / runs.length;

/** One GET on 127.0.0.1 (fresh connection), bounded by `timeoutMs`: status and body, or the connection error. */
export function get(url: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'GET', agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Heartbeats from simulated clients, each request the next address of one sequence shared by every run that takes
 * the same `sequence` (an address comes back only after 131,072 requests, far apart for the 1/s per-client limit).
 */
export function simulatedHeartbeats(
  url: string,
  connections: number,
  seconds: number,
  sequence: { next: number },
): Promise<LoadResult> {
  return load({
    url,
    connections,
    seconds,
    method: 'POST',
    path: '/heartbeat',
    vary: () => ({ headers: { 'x-forwarded-for': simulatedAddress(sequence.next++) } }),
  });
}
