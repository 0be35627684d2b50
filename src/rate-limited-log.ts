// Repeated log lines, limited: one line per distinct message per window, and one line counting the rest, so a fault
// that refuses thousands of requests a second (a full disk, Redis down) writes a line every 10 s, not one per request.
import type { FastifyBaseLogger } from 'fastify';

type Level = 'warn' | 'error';

/** The part of a pino (Fastify) logger this needs. */
export type LineLogger = Pick<FastifyBaseLogger, Level>;

/** At most one line per distinct message in this long, in ms. */
export const LOG_WINDOW_MS = 10_000;
/** Distinct keys tracked at once; past it, lines are grouped by message alone, so memory stays bounded. */
const MAX_WINDOWS = 1000;

interface Window {
  level: Level;
  msg: string;
  /** The first line's fields, without `err`: the count line should not repeat a stack. */
  context: Record<string, unknown>;
  repeated: number;
  timer: NodeJS.Timeout;
}

export class RateLimitedLog {
  private readonly windows = new Map<string, Window>();

  /** `summaries`: where the "and N more like it" lines go (the app's logger, not one request's). */
  constructor(
    private readonly summaries: LineLogger,
    private readonly windowMs: number = LOG_WINDOW_MS,
  ) {}

  /**
   * Writes the line at once unless a line with the same `key` was written in the current window; such lines are
   * counted, and when the window ends one line says how many there were. The windows are timers (unref'd, so they never
   * keep the process alive), not clock readings: nothing here depends on what time it is.
   */
  write(
    logger: LineLogger,
    level: Level,
    context: Record<string, unknown>,
    msg: string,
    key = `${level} ${msg}`,
  ): void {
    if (this.windows.size >= MAX_WINDOWS && !this.windows.has(key)) key = `${level} ${msg}`;
    const open = this.windows.get(key);
    if (open) {
      open.repeated++;
      return;
    }
    logger[level](context, msg);
    const { err: _stack, ...quiet } = context;
    this.open(key, { level, msg, context: quiet, repeated: 0 });
  }

  /** Writes every pending count now (at shutdown, so the last window's count is not lost). */
  flush(): void {
    for (const key of [...this.windows.keys()]) this.close(key, false);
  }

  private open(key: string, window: Omit<Window, 'timer'>): void {
    const timer = setTimeout(() => this.close(key, true), this.windowMs);
    timer.unref();
    this.windows.set(key, { ...window, timer });
  }

  private close(key: string, reopen: boolean): void {
    const window = this.windows.get(key);
    if (!window) return;
    clearTimeout(window.timer);
    this.windows.delete(key);
    if (window.repeated === 0) return;
    const seconds = Math.round(this.windowMs / 1000);
    this.summaries[window.level](
      { ...window.context, repeated: window.repeated },
      `${window.msg} (and ${window.repeated} more like it in the last ${seconds} s)`,
    );
    // Still happening: the next window stays quiet too, so a lasting fault writes one line per window.
    if (reopen) this.open(key, { ...window, repeated: 0 });
  }
}
