// One turn's heartbeats, leaves and erasures, laid out as the KEYS and ARGV of one record.lua call per shard (the
// layout record.lua's header gives).
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

/**
 * One operation of a call: a heartbeat (with its channel, or null when none or refused), visible ('b') or opting out
 * of presence lookups ('h'), a leave ('l') or an erasure ('e'). The opt-out rides in the kind, so a heartbeat keeps
 * the five fields of record.lua's layout.
 */
export interface RecordOp {
  kind: 'b' | 'h' | 'l' | 'e';
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

/** Where an erasure's answer is: the reply of its shard's call, at this index (record.lua returns one per erasure). */
export interface ErasureSlot {
  shard: number;
  index: number;
}

export interface RecordBatch {
  calls: ShardCall[];
  /** The shards each request writes to, in request order: a request is acknowledged once all of them answered. */
  shardsOf: Set<number>[];
  /** The erasures of each request, in request order (undefined: none), so it can answer how many were found. */
  erasuresOf: (ErasureSlot[] | undefined)[];
  /** Channels beaten on, with their latest heartbeat (their shared leases are extended). */
  leases: Map<string, number>;
  heartbeats: number;
}

interface ShardEntry {
  days: Map<string, { index: number; startMs: number; endMs: number }>;
  channels: Map<string, number>;
  ops: (string | Buffer | number)[];
  erasures: number;
}

/** What the layout needs of the store's options; retentionDays undefined: maxDays. */
export interface LayoutSettings {
  calendar: Calendar;
  heartbeatTimeoutMs: number;
  maxDays: number;
  retentionDays?: number;
}

export function layOutBatch(
  requests: readonly RecordRequest[],
  keys: RedisKeys,
  settings: LayoutSettings,
): RecordBatch {
  const perShard = new Map<number, ShardEntry>();
  const leases = new Map<string, number>();
  const shardsOf: Set<number>[] = [];
  const erasuresOf: (ErasureSlot[] | undefined)[] = [];
  let heartbeats = 0;
  for (const request of requests) {
    const day = settings.calendar.dayOf(request.nowMs);
    const shards = new Set<number>();
    shardsOf.push(shards);
    let erasures: ErasureSlot[] | undefined;
    for (const op of request.ops) {
      const shard = keys.shardOf(op.identity);
      shards.add(shard);
      let entry = perShard.get(shard);
      if (!entry) {
        entry = { days: new Map(), channels: new Map(), ops: [], erasures: 0 };
        perShard.set(shard, entry);
      }
      const identity = Buffer.from(op.identity, 'latin1');
      if (op.kind === 'l' || op.kind === 'e') {
        entry.ops.push(op.kind, identity, request.nowMs, 0, 0);
        if (op.kind === 'e') (erasures ??= []).push({ shard, index: entry.erasures++ });
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
      entry.ops.push(op.kind, identity, request.nowMs, shardDay.index, channelIndex);
    }
    erasuresOf.push(erasures);
  }
  const calls = [...perShard].map(([shard, entry]) => shardCall(shard, entry, keys, settings));
  return { calls, shardsOf, erasuresOf, leases, heartbeats };
}

function shardCall(shard: number, entry: ShardEntry, keys: RedisKeys, settings: LayoutSettings): ShardCall {
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
      keys.hidden(shard),
      ...dayKeys,
      ...channelNames.map((name) => keys.channel(shard, name)),
    ],
    args: [
      heartbeatTimeoutMs,
      (settings.retentionDays ?? maxDays) * DAY_MS,
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
