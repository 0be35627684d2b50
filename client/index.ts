// The online-stats client SDK for browsers and Node: heartbeats at an interval with jitter, backoff, Retry-After and
// leave.
// No dependencies and no imports: the compiled file is also the browser build the service serves at /client.js.

/** What `createHeartbeat` needs; only `url` is required. */
export interface HeartbeatOptions {
  /** Base URL of the service, e.g. `https://stats.example.com` or `/stats` (relative URLs resolve against the page). */
  url: string;
  /** A page, room or part of the app to count this client under (printable ASCII, at most 64 characters by default). */
  channel?: string;
  /** Time between heartbeats, in ms. Keep it well under the service's --heartbeat-timeout (default 10 minutes). */
  intervalMs?: number;
  /** Each wait is intervalMs × (1 ± jitter), drawn anew every time, so many clients do not beat in step. 0 to 1. */
  jitter?: number;
  /** A stable anonymous id; default: one kept in localStorage (browsers) or made for this process (Node). */
  clientId?: string;
  /**
   * Where the id (and the time of the last beacon leave) is kept between pages; default: localStorage when there is
   * one, `null` for none.
   */
  storage?: IdStorage | null;
  /** The key of the id in `storage`. */
  storageKey?: string;
  /**
   * In a browser, send `leave` through navigator.sendBeacon when the page is hidden and resume when it shows again.
   * Default true.
   */
  leaveOnHide?: boolean;
  /** Longest wait after repeated errors, in ms. */
  maxBackoffMs?: number;
  /** Longest wait for one answer, in ms, before it counts as an error. */
  requestTimeoutMs?: number;
  /** Called after every attempt with what happened and when the next heartbeat is due. */
  onResult?: (result: HeartbeatResult) => void;
  /** Replacements for tests and special hosts. */
  fetch?: FetchLike;
  timers?: Timers;
  /** Epoch ms, to read a Retry-After given as an HTTP date. */
  now?: () => number;
  /** Uniform in [0, 1): jitter and id generation fallback. */
  random?: () => number;
}

export interface IdStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The part of the Fetch API the SDK uses. */
export type FetchLike = (
  url: string,
  init: { method: string; headers: Record<string, string>; body: string; signal?: AbortSignal; keepalive?: boolean },
) => Promise<{ ok: boolean; status: number; headers: { get(name: string): string | null } }>;

export type HeartbeatResult =
  | { kind: 'ok'; status: number; nextInMs: number }
  /** 429: the service asked to wait; the next heartbeat waits exactly Retry-After. */
  | { kind: 'rate-limited'; status: 429; retryAfterMs: number; nextInMs: number }
  /** A network error, a timeout or any other status: the next wait doubles up to maxBackoffMs. */
  | { kind: 'error'; status: number | null; error: unknown; failures: number; nextInMs: number };

export interface Heartbeat {
  /** The id this client reports under. */
  readonly clientId: string;
  /** True between start() and stop() or leave(). */
  readonly running: boolean;
  /** Sends a heartbeat now, then one every interval. Does nothing when running already. */
  start(): void;
  /** Stops sending; the client stays online until the service's heartbeat timeout. */
  stop(): void;
  /** Stops sending and tells the service the client is offline now. */
  leave(): Promise<void>;
}

export const DEFAULT_INTERVAL_MS = 30_000;
export const DEFAULT_JITTER = 0.1;
export const DEFAULT_MAX_BACKOFF_MS = 300_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
export const DEFAULT_STORAGE_KEY = 'online-stats-client-id';
const MIN_RETRY_AFTER_MS = 1000;
/**
 * After a page of this browser left by beacon, a new page (a reload, the next page of a site) waits this
 * long before its first heartbeat, so the leave cannot arrive after it and take the client offline.
 */
export const LEAVE_SETTLE_MS = 1000;

// The browser globals the SDK may use; all are optional so the same code runs in Node.
interface MaybeBrowser {
  location?: { href: string };
  localStorage?: IdStorage;
  document?: {
    visibilityState?: string;
    addEventListener(type: string, listener: () => void): void;
    removeEventListener(type: string, listener: () => void): void;
  };
  navigator?: { sendBeacon?: (url: string, data: Blob | string) => boolean };
  addEventListener?: (type: string, listener: () => void) => void;
  removeEventListener?: (type: string, listener: () => void) => void;
  crypto?: { randomUUID?: () => string; getRandomValues?: <T extends Uint8Array>(array: T) => T };
}
const host = globalThis as unknown as MaybeBrowser;

class HttpError extends Error {
  constructor(readonly status: number) {
    super(`the service answered ${status}`);
    this.name = 'HttpError';
  }
}

/** Creates a heartbeat sender; call `start()` to begin. */
export function createHeartbeat(options: HeartbeatOptions): Heartbeat {
  const intervalMs = positive(options.intervalMs ?? DEFAULT_INTERVAL_MS, 'intervalMs');
  const jitter = options.jitter ?? DEFAULT_JITTER;
  if (!(jitter >= 0 && jitter <= 1)) throw new RangeError('jitter must be between 0 and 1');
  const maxBackoffMs = Math.max(intervalMs, positive(options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS, 'maxBackoffMs'));
  const requestTimeoutMs = positive(options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, 'requestTimeoutMs');
  const timers: Timers = options.timers ?? {
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (h) => clearTimeout(h as never),
  };
  const now = options.now ?? (() => Date.now());
  const random = options.random ?? Math.random;
  const doFetch: FetchLike = options.fetch ?? ((url, init) => fetch(url, init));
  const heartbeatUrl = endpoint(options.url, 'heartbeat');
  const leaveUrl = endpoint(options.url, 'leave');
  const storage = defaultStorage(options);
  const storageKey = options.storageKey ?? DEFAULT_STORAGE_KEY;
  const leftAtKey = `${storageKey}:left-at`;
  const clientId = options.clientId ?? storedClientId(storage, storageKey, random);
  const body = JSON.stringify(
    options.channel === undefined ? { client_id: clientId } : { client_id: clientId, channel: options.channel },
  );
  const json = { 'content-type': 'application/json' };

  let running = false;
  let hidden = false;
  let timer: unknown = null;
  let inFlight: AbortController | null = null;
  let failures = 0;
  // Bumped on stop/leave/hide so an answer that arrives afterwards schedules nothing.
  let generation = 0;

  const schedule = (ms: number) => {
    timers.clearTimeout(timer);
    timer = timers.setTimeout(() => void beat(), ms);
  };
  const jittered = (ms: number) => Math.max(0, Math.round(ms * (1 + jitter * (2 * random() - 1))));

  const beat = async (): Promise<void> => {
    timer = null;
    const mine = generation;
    const abort = new AbortController();
    inFlight = abort;
    // A real timer, not the injected ones: it bounds the network, not the schedule.
    const deadline = setTimeout(() => abort.abort(), requestTimeoutMs);
    (deadline as { unref?: () => void }).unref?.();
    let result: HeartbeatResult;
    try {
      const response = await doFetch(heartbeatUrl, { method: 'POST', headers: json, body, signal: abort.signal });
      if (response.status === 429) {
        const retryAfterMs = parseRetryAfterMs(response.headers.get('retry-after'), now());
        if (retryAfterMs === null) throw new HttpError(429);
        // Exactly as asked, except that "0" (or a date already past) must not turn into a tight loop.
        result = {
          kind: 'rate-limited',
          status: 429,
          retryAfterMs,
          nextInMs: Math.max(retryAfterMs, MIN_RETRY_AFTER_MS),
        };
      } else if (!response.ok) {
        throw new HttpError(response.status);
      } else {
        failures = 0;
        result = { kind: 'ok', status: response.status, nextInMs: jittered(intervalMs) };
      }
    } catch (error) {
      if (mine !== generation) return;
      failures += 1;
      const backoffMs = Math.min(maxBackoffMs, intervalMs * 2 ** Math.min(failures, 30));
      const status = error instanceof HttpError ? error.status : null;
      result = { kind: 'error', status, error, failures, nextInMs: jittered(backoffMs) };
    } finally {
      clearTimeout(deadline);
      if (inFlight === abort) inFlight = null;
    }
    if (mine !== generation || !running || hidden) return;
    schedule(result.nextInMs);
    options.onResult?.(result);
  };

  const halt = () => {
    generation += 1;
    timers.clearTimeout(timer);
    timer = null;
    inFlight?.abort();
    inFlight = null;
  };

  // Hidden: the user is not looking, so the client leaves at once (a beacon survives the page closing).
  const onVisibility = () => {
    if (!running) return;
    if (host.document?.visibilityState === 'hidden') {
      if (hidden) return;
      hidden = true;
      halt();
      sendBeaconLeave();
    } else if (hidden) {
      hidden = false;
      halt();
      resume();
    }
  };
  const onPageHide = () => {
    if (!running || hidden) return;
    hidden = true;
    halt();
    sendBeaconLeave();
  };
  const onPageShow = () => {
    if (running && hidden && host.document?.visibilityState !== 'hidden') onVisibility();
  };
  // The first heartbeat of a page, or of a tab shown again: not before a recent beacon leave has surely arrived.
  const resume = () => {
    const settleMs = Number(attempt(() => storage?.getItem(leftAtKey)) ?? 0) + LEAVE_SETTLE_MS - now();
    if (settleMs > 0 && settleMs <= LEAVE_SETTLE_MS) schedule(settleMs);
    else void beat();
  };
  const sendBeaconLeave = () => {
    // text/plain is all a cross-origin beacon may carry without a preflight; the service reads it as JSON.
    const sent = host.navigator?.sendBeacon?.(leaveUrl, body) ?? false;
    attempt(() => storage?.setItem(leftAtKey, String(now())));
    if (!sent) void doFetch(leaveUrl, { method: 'POST', headers: json, body, keepalive: true }).catch(() => {});
  };
  const watchPage = options.leaveOnHide !== false && host.document !== undefined;
  const listen = (on: boolean) => {
    if (!watchPage) return;
    const method = on ? 'addEventListener' : 'removeEventListener';
    host.document?.[method]('visibilitychange', onVisibility);
    host[method]?.('pagehide', onPageHide);
    host[method]?.('pageshow', onPageShow);
  };

  const stop = () => {
    if (!running) return;
    running = false;
    hidden = false;
    listen(false);
    halt();
  };

  return {
    clientId,
    get running() {
      return running;
    },
    start() {
      if (running) return;
      running = true;
      failures = 0;
      listen(true);
      hidden = watchPage && host.document?.visibilityState === 'hidden';
      if (!hidden) resume();
    },
    stop,
    async leave() {
      stop();
      const response = await doFetch(leaveUrl, { method: 'POST', headers: json, body, keepalive: true });
      if (!response.ok) throw new HttpError(response.status);
    },
  };
}

/**
 * Retry-After in ms: delta-seconds or an HTTP date (RFC 9110 §10.2.3); null when absent or unreadable.
 */
export function parseRetryAfterMs(value: string | null, nowMs: number): number | null {
  if (value === null) return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const dateMs = Date.parse(text);
  return Number.isNaN(dateMs) ? null : Math.max(0, dateMs - nowMs);
}

function positive(value: number, name: string): number {
  if (!(Number.isFinite(value) && value > 0)) throw new RangeError(`${name} must be a positive number of ms`);
  return value;
}

// Keeps any path of the base (a service mounted under /stats) and resolves a relative base against the page.
function endpoint(base: string, path: string): string {
  const absolute = host.location ? new URL(base, host.location.href).href : new URL(base).href;
  return new URL(path, absolute.endsWith('/') ? absolute : `${absolute}/`).href;
}

// Storage throws where it is blocked (sandboxed frames, some private modes): then nothing is kept.
function attempt<T>(action: () => T): T | undefined {
  try {
    return action();
  } catch {
    return undefined;
  }
}

function defaultStorage(options: HeartbeatOptions): IdStorage | null {
  if (options.storage !== undefined) return options.storage;
  return host.document === undefined ? null : (attempt(() => host.localStorage) ?? null);
}

function storedClientId(storage: IdStorage | null, key: string, random: () => number): string {
  const kept = attempt(() => storage?.getItem(key));
  if (kept && /^[\x21-\x7e]{1,128}$/.test(kept)) return kept;
  const id = newClientId(random);
  attempt(() => storage?.setItem(key, id));
  return id;
}

function newClientId(random: () => number): string {
  if (host.crypto?.randomUUID) return host.crypto.randomUUID();
  const bytes = new Uint8Array(16);
  if (host.crypto?.getRandomValues) host.crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
