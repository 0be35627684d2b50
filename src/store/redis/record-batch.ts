// One turn's heartbeats and leaves, laid out as the KEYS and ARGV of one record.lua call per shard (the layout
// record.lua's header gives).
import type { RedisKeys } from '../../redis/keys.js';
import type { Calendar } from '../../calendar.js';

const DAY_MS = 86_400_000;
/** Stale entries each write removes per key: housekeeping keeps up without making any call long. */
const TRIM_BUDGET = 256;
/** Day sketches outlive the longest look-back by a month, so a month's distinct count still finds them. */
const SKETCH_EXTRA_DAYS = 31;
/**
 * Changes of the online counts a shard keeps until the history is settled (every second, docs/analytics.md): far
 * beyond a second's, so only a history nobody settles for long starts again from the live counts.
 */
export const MAX_UNSETTLED_CHANGES = 1_000_000;

/** One operation of a call: a heartbeat (with its channel, or null when none or refused) or a leave. */
export interface RecordOp {
  kind: 'b' | 'l';
  identity: string;
  channel: string | null;
}

/** One caller's operations, all at one time. */
export interface RecordRequest {
  ops: readonly RecordOp[];
  nowMs: number;
}

/** The script call of one shard. */
export interface ShardCall {
  shard: number;
  keys: string[];
  args: (string | Buffer | number)[];
}

export interface RecordBatch {
  calls: ShardCall[];
  /** The shards each request writes to, in request order: a request is acknowledged once all of them answered. */
  shardsOf: Set<number>[];
  /** Channels beaten on, with their latest heartbeat (their shared leases are extended). */
  leases: Map<string, number>;
  heartbeats: number;
}

interface ShardEntry {
  days: Map<string, { index: number; startMs: number; endMs: number }>;
  channels: Map<string, number>;
  ops: (string | Buffer | number)[];
  latestMs: number;
}

export function layOutBatch(
  requests: readonly RecordRequest[],
  keys: RedisKeys,
  settings: { calendar: Calendar; heartbeatTimeoutMs: number; maxDays: number },
): RecordBatch {
  const perShard = new Map<number, ShardEntry>();
  const leases = new Map<string, number>();
  const shardsOf: Set<number>[] = [];
  let heartbeats = 0;
  for (const request of requests) {
    const day = settings.calendar.dayOf(request.nowMs);
    const shards = new Set<number>();
    shardsOf.push(shards);
    for (const op of request.ops) {
      const shard = keys.shardOf(op.identity);
      shards.add(shard);
      let entry = perShard.get(shard);
      if (!entry) {
        entry = { days: new Map(), channels: new Map(), ops: [], latestMs: request.nowMs };
        perShard.set(shard, entry);
      }
      entry.latestMs = Math.max(entry.latestMs, request.nowMs);
      const identity = Buffer.from(op.identity, 'latin1');
      if (op.kind === 'l') {
        entry.ops.push('l', identity, request.nowMs, 0, 0);
        continue;
      }
      heartbeats++;
      let shardDay = entry.days.get(day.key);
      if (shardDay === undefined) {
        shardDay = { index: entry.days.size + 1, startMs: day.startMs, endMs: day.endMs };
        entry.days.set(day.key, shardDay);
      }
      let channelIndex = 0;
      if (op.channel !== null) {
        channelIndex = entry.channels.get(op.channel) ?? 0;
        if (channelIndex === 0) entry.channels.set(op.channel, (channelIndex = entry.channels.size + 1));
        leases.set(op.channel, Math.max(leases.get(op.channel) ?? 0, request.nowMs));
      }
      entry.ops.push('b', identity, request.nowMs, shardDay.index, channelIndex);
    }
  }
  const calls = [...perShard].map(([shard, entry]) => shardCall(shard, entry, keys, settings));
  return { calls, shardsOf, leases, heartbeats };
}

function shardCall(
  shard: number,
  entry: ShardEntry,
  keys: RedisKeys,
  settings: { heartbeatTimeoutMs: number; maxDays: number },
): ShardCall {
  const { heartbeatTimeoutMs, maxDays } = settings;
  const dayArgs: (string | number)[] = [];
  const dayKeys: string[] = [];
  for (const [dayKey, { startMs, endMs }] of entry.days) {
    dayArgs.push(dayKey, startMs, endMs + (maxDays + SKETCH_EXTRA_DAYS) * DAY_MS);
    dayKeys.push(keys.sketch(shard, dayKey));
  }
  const channelNames = [...entry.channels.keys()];
  return {
    shard,
    keys: [
      keys.seen(shard),
      keys.left(shard),
      keys.days(shard),
      keys.chans(shard),
      keys.hist(shard),
      keys.historyLog(shard),
      ...dayKeys,
      ...channelNames.map((name) => keys.channel(shard, name)),
    ],
    args: [
      heartbeatTimeoutMs,
      entry.latestMs - (maxDays + 1) * DAY_MS,
      TRIM_BUDGET,
      keys.channelPrefix(shard),
      MAX_UNSETTLED_CHANGES,
      entry.days.size,
      ...dayArgs,
      channelNames.length,
      ...channelNames,
      ...entry.ops,
    ],
  };
}
