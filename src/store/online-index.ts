// Who is online, in memory: identities ordered by last heartbeat, so expiry and counting are O(1) amortised.

/**
 * A Map keeps insertion order, and a heartbeat re-inserts its identity at the end, so the Map stays
 * sorted by last-seen time (times are made monotonic by the caller). Expiring is then popping from
 * the front until the first identity still within the timeout: the count is exact at every query,
 * unlike a periodic sweep, and no operation ever looks at more than the identities it expires.
 */
export class OnlineIndex {
  private readonly lastSeenMs = new Map<string, number>();
  /**
   * Told every change of the count at its instant, in order (the history of concurrency.ts): a rise when a touch
   * brings an identity online, a fall when one is removed, or expires (at its last heartbeat + the timeout + 1 ms,
   * the first instant count() no longer includes it). Expiries due are reported before a touch's rise.
   */
  onChange: ((atMs: number, count: number) => void) | null = null;

  constructor(private readonly timeoutMs: number) {}

  /** Records a heartbeat; `nowMs` must not be earlier than any time recorded before. */
  touch(identity: string, nowMs: number): void {
    if (this.onChange !== null) this.expire(nowMs);
    const before = this.lastSeenMs.size;
    this.lastSeenMs.delete(identity);
    this.lastSeenMs.set(identity, nowMs);
    if (this.lastSeenMs.size > before) this.onChange?.(nowMs, this.lastSeenMs.size);
  }

  /** Last heartbeat of an online identity, or undefined (offline, expired or unknown). */
  lastSeen(identity: string, nowMs: number): number | undefined {
    const seen = this.lastSeenMs.get(identity);
    return seen !== undefined && nowMs - seen <= this.timeoutMs ? seen : undefined;
  }

  /** An identity leaves at `nowMs`. */
  remove(identity: string, nowMs: number): boolean {
    if (this.onChange !== null) this.expire(nowMs);
    if (!this.lastSeenMs.delete(identity)) return false;
    this.onChange?.(nowMs, this.lastSeenMs.size);
    return true;
  }

  /** Identities whose last heartbeat is at most the timeout before `nowMs`. */
  count(nowMs: number): number {
    this.expire(nowMs);
    return this.lastSeenMs.size;
  }

  expire(nowMs: number): void {
    const cutoffMs = nowMs - this.timeoutMs;
    for (const [identity, seenMs] of this.lastSeenMs) {
      if (seenMs >= cutoffMs) break;
      this.lastSeenMs.delete(identity);
      this.onChange?.(seenMs + this.timeoutMs + 1, this.lastSeenMs.size);
    }
  }
}

/** Online identities per channel, with the number of channels bounded. */
export class ChannelIndex {
  private readonly channels = new Map<string, OnlineIndex>();
  private onChange: ((channel: string, atMs: number, count: number) => void) | null = null;

  constructor(
    private readonly timeoutMs: number,
    private readonly maxChannels: number,
  ) {}

  /** Reports every change of every channel's count, as OnlineIndex.onChange does. */
  observe(onChange: (channel: string, atMs: number, count: number) => void): void {
    this.onChange = onChange;
    for (const [channel, index] of this.channels) index.onChange = (atMs, count) => onChange(channel, atMs, count);
  }

  /** Records a heartbeat on a channel; false (nothing recorded) when it is a new channel and the maximum are online. */
  canTouch(channel: string, nowMs: number): boolean {
    if (this.channels.has(channel)) return true;
    if (this.channels.size < this.maxChannels) return true;
    this.expire(nowMs);
    return this.channels.size < this.maxChannels;
  }

  touch(channel: string, identity: string, nowMs: number): void {
    let index = this.channels.get(channel);
    if (!index) {
      index = new OnlineIndex(this.timeoutMs);
      const onChange = this.onChange;
      if (onChange !== null) index.onChange = (atMs, count) => onChange(channel, atMs, count);
      this.channels.set(channel, index);
    }
    index.touch(identity, nowMs);
  }

  /** Last heartbeat of an identity online on `channel`, or undefined. */
  lastSeen(channel: string, identity: string, nowMs: number): number | undefined {
    return this.channels.get(channel)?.lastSeen(identity, nowMs);
  }

  /** The channels an identity is online on (a scan of every channel: for leaves). */
  channelsOf(identity: string, nowMs: number): string[] {
    return [...this.channels].filter(([, index]) => index.lastSeen(identity, nowMs) !== undefined).map(([c]) => c);
  }

  /** Removes an identity from every channel (a leave at `nowMs`). */
  removeEverywhere(identity: string, nowMs: number): void {
    for (const index of this.channels.values()) index.remove(identity, nowMs);
  }

  /** Every channel online, with its count. */
  counts(nowMs: number): [string, number][] {
    this.expire(nowMs);
    return [...this.channels].map(([channel, index]) => [channel, index.count(nowMs)]);
  }

  count(channel: string, nowMs: number): number {
    const index = this.channels.get(channel);
    if (!index) return 0;
    const online = index.count(nowMs);
    if (online === 0) this.channels.delete(channel);
    return online;
  }

  top(nowMs: number, limit: number): { channel: string; online: number }[] {
    this.expire(nowMs);
    return [...this.channels]
      .map(([channel, index]) => ({ channel, online: index.count(nowMs) }))
      .sort((a, b) => b.online - a.online || (a.channel < b.channel ? -1 : 1))
      .slice(0, limit);
  }

  /** Drops channels nobody is online on. */
  expire(nowMs: number): void {
    for (const [channel, index] of this.channels) if (index.count(nowMs) === 0) this.channels.delete(channel);
  }
}
