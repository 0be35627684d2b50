// The embedded store's heartbeat journal: groups of records written in place in a preallocated file (docs/storage.md).
import { createHash } from 'node:crypto';
import { closeSync, fdatasync, fstatSync, fsyncSync, openSync, readSync, writeSync, writevSync } from 'node:fs';

/** The journal of a database is its file name with this after it (SQLite's own files end in -wal, -shm, -journal). */
export const JOURNAL_SUFFIX = '.journal';
/** Groups take whole slots: a group header is one slot, its records the slots after it. */
export const SLOT_BYTES = 64;
/** Each of the two segments: 16 MiB holds about 600,000 heartbeats without a channel. */
export const DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024;

const MAGIC = 0x314a534f; // "OSJ1" read as little-endian bytes
const HASH_BYTES = 16;
const RECORD_HEADER_BYTES = 16;
const BEAT = 1;
const LEAVE = 2;
const ERASE = 3;
/** A record's flags byte (its second): a heartbeat that opted out of presence lookups. */
const HIDDEN = 1;
const NO_CHANNEL = 0xffff;
/** fdatasync calls in flight at once: a group need not wait for the one before it, and the pool keeps threads free. */
const MAX_SYNCS_IN_FLIGHT = 2;

export type JournalRecord =
  | { kind: 'beat'; identity: string; atMs: number; channel: string | null; hidden?: boolean }
  | { kind: 'leave'; identity: string; atMs: number }
  | { kind: 'erase'; identity: string; atMs: number };

/** One group as it lies in the file. */
export interface JournalGroup {
  seq: number;
  epoch: number;
  /** Where it starts in the file, and how long it is (whole slots). */
  offset: number;
  bytes: number;
  records: JournalRecord[];
}

/** A run of consecutive groups in one segment: what the fold reads in one go. */
export interface JournalRange {
  from: number;
  to: number;
  firstSeq: number;
  lastSeq: number;
}

/** The bytes of one group: its header slot, then its records, padded to a whole slot. */
export function encodeGroup(records: readonly JournalRecord[], epoch: number, seq: number): Buffer {
  let payload = 0;
  for (const record of records)
    payload +=
      RECORD_HEADER_BYTES +
      record.identity.length +
      (record.kind === 'beat' && record.channel !== null ? Buffer.byteLength(record.channel) : 0);
  const bytes = SLOT_BYTES + Math.ceil(payload / SLOT_BYTES) * SLOT_BYTES;
  const buffer = Buffer.alloc(bytes);
  let at = SLOT_BYTES;
  for (const record of records) {
    const channel = record.kind === 'beat' ? record.channel : null;
    buffer.writeUInt8(record.kind === 'beat' ? BEAT : record.kind === 'leave' ? LEAVE : ERASE, at);
    if (record.kind === 'beat' && record.hidden === true) buffer.writeUInt8(HIDDEN, at + 1);
    buffer.writeUInt16LE(record.identity.length, at + 2);
    const identityAt = at + RECORD_HEADER_BYTES;
    const channelAt = identityAt + buffer.write(record.identity, identityAt, 'latin1');
    const channelBytes = channel === null ? 0 : buffer.write(channel, channelAt, 'utf8');
    buffer.writeUInt16LE(channel === null ? NO_CHANNEL : channelBytes, at + 4);
    buffer.writeDoubleLE(record.atMs, at + 8);
    at = channelAt + channelBytes;
  }
  buffer.writeUInt32LE(MAGIC, 0);
  buffer.writeUInt32LE(records.length, 4);
  buffer.writeUInt32LE(payload, 8);
  buffer.writeUInt32LE(epoch, 12);
  buffer.writeDoubleLE(seq, 16);
  hashOf(buffer, payload).copy(buffer, 32);
  return buffer;
}

/** Over the header's first 32 bytes and the payload: a group torn anywhere (a crash in the middle) does not match. */
function hashOf(group: Buffer, payload: number): Buffer {
  return createHash('sha256')
    .update(group.subarray(0, 32))
    .update(group.subarray(SLOT_BYTES, SLOT_BYTES + payload))
    .digest()
    .subarray(0, HASH_BYTES);
}

/** The group at `at` of `segment` (a buffer of the segment from its start), or null when there is no whole one. */
export function decodeGroup(segment: Buffer, at: number, base: number): JournalGroup | null {
  if (at + SLOT_BYTES > segment.length || segment.readUInt32LE(at) !== MAGIC) return null;
  const count = segment.readUInt32LE(at + 4);
  const payload = segment.readUInt32LE(at + 8);
  const bytes = SLOT_BYTES + Math.ceil(payload / SLOT_BYTES) * SLOT_BYTES;
  if (at + bytes > segment.length) return null;
  const group = segment.subarray(at, at + bytes);
  if (!hashOf(group, payload).equals(group.subarray(32, 32 + HASH_BYTES))) return null;
  const records: JournalRecord[] = [];
  let from = SLOT_BYTES;
  for (let n = 0; n < count; n++) {
    const kind = group.readUInt8(from);
    const identityBytes = group.readUInt16LE(from + 2);
    const channelBytes = group.readUInt16LE(from + 4);
    const atMs = group.readDoubleLE(from + 8);
    const identityAt = from + RECORD_HEADER_BYTES;
    const identity = group.toString('latin1', identityAt, identityAt + identityBytes);
    const channelAt = identityAt + identityBytes;
    if (kind === LEAVE) records.push({ kind: 'leave', identity, atMs });
    else if (kind === ERASE) records.push({ kind: 'erase', identity, atMs });
    else {
      const channel = channelBytes === NO_CHANNEL ? null : group.toString('utf8', channelAt, channelAt + channelBytes);
      if ((group.readUInt8(from + 1) & HIDDEN) !== 0)
        records.push({ kind: 'beat', identity, atMs, channel, hidden: true });
      else records.push({ kind: 'beat', identity, atMs, channel });
    }
    from = channelAt + (channelBytes === NO_CHANNEL ? 0 : channelBytes);
  }
  return { seq: group.readDoubleLE(16), epoch: group.readUInt32LE(12), offset: base + at, bytes, records };
}

/** The groups of one segment's chain: from its start, while each is whole and follows the one before (epoch, seq). */
function readChain(fd: number, segment: number, segmentBytes: number): JournalGroup[] {
  const buffer = Buffer.alloc(segmentBytes);
  readSync(fd, buffer, 0, segmentBytes, segment * segmentBytes);
  const groups: JournalGroup[] = [];
  let at = 0;
  for (;;) {
    const group = decodeGroup(buffer, at, segment * segmentBytes);
    const before = groups[groups.length - 1];
    if (group === null || (before !== undefined && (group.epoch !== before.epoch || group.seq !== before.seq + 1)))
      return groups;
    groups.push(group);
    at += group.bytes;
  }
}

/** Reads the groups in `range` (the fold's input), checking each is whole and in sequence. */
export function readRange(fd: number, range: JournalRange): JournalGroup[] {
  const buffer = Buffer.alloc(range.to - range.from);
  readSync(fd, buffer, 0, buffer.length, range.from);
  const groups: JournalGroup[] = [];
  for (let at = 0, seq = range.firstSeq; seq <= range.lastSeq; seq++) {
    const group = decodeGroup(buffer, at, range.from);
    if (group === null || group.seq !== seq) throw new Error(`journal group ${seq} at ${range.from + at} is not whole`);
    groups.push(group);
    at += group.bytes;
  }
  return groups;
}

/** Where the next group goes. */
interface Cursor {
  epoch: number;
  offset: number;
  seq: number;
}

/**
 * Two segments used in turn. A segment is written from its start with a new epoch only once every group it held is
 * folded into the database. A group is acknowledged after an fdatasync that began after it was written (on libuv's
 * pool, off the event loop); the file never changes size after creation, so that fdatasync writes data only, not the
 * file system's metadata.
 */
export class Journal {
  private cursor: Cursor;
  /** The last seq written into each segment in its current epoch (-1: none). */
  private readonly lastSeqOf: [number, number];
  private syncsInFlight = 0;
  /** How far each segment may hold anything written (what a wipe zeroes): all of it until the first wipe. */
  private readonly usedBytes: [number, number];
  private unwritten: { at: number; bytes: Buffer }[] = [];
  private waiting: { done: () => void; fail: (error: Error) => void }[] = [];

  private constructor(
    private readonly fd: number,
    readonly segmentBytes: number,
    cursor: Cursor,
    lastSeqOf: [number, number],
  ) {
    this.cursor = cursor;
    this.lastSeqOf = lastSeqOf;
    this.usedBytes = [segmentBytes, segmentBytes];
  }

  /**
   * Opens the journal at `path` (creating it, zero-filled, if absent), and returns the groups after `foldedSeq`: whole,
   * in sequence, oldest first. A torn or stale group ends the chain, and nothing after it is replayed: a group is only
   * acknowledged once everything written before it is durable, so what follows a torn group was never acknowledged.
   */
  static open(
    path: string,
    foldedSeq: number,
    segmentBytes = DEFAULT_SEGMENT_BYTES,
  ): { journal: Journal; unfolded: JournalGroup[] } {
    closeSync(openSync(path, 'a+', 0o600));
    const handle = openSync(path, 'r+');
    try {
      const size = fstatSync(handle).size;
      if (size < 2 * segmentBytes) {
        // Zeros written for real (not a sparse file), so later writes allocate nothing.
        const zeros = Buffer.alloc(1024 * 1024);
        for (let at = size; at < 2 * segmentBytes; at += zeros.length)
          writeSync(handle, zeros, 0, Math.min(zeros.length, 2 * segmentBytes - at), at);
        fsyncSync(handle);
      }
      const chains = [readChain(handle, 0, segmentBytes), readChain(handle, 1, segmentBytes)];
      // The newer chain is the one with the higher epoch; an empty chain counts as older than any.
      const epochOf = (chain: JournalGroup[]) => chain[0]?.epoch ?? -1;
      const newer = epochOf(chains[1] as JournalGroup[]) > epochOf(chains[0] as JournalGroup[]) ? 1 : 0;
      const older = chains[1 - newer] as JournalGroup[];
      const newest = chains[newer] as JournalGroup[];
      // In seq order: the replay goes from the group after foldedSeq while the seqs follow one another.
      const ordered = [...older, ...newest];
      const unfolded: JournalGroup[] = [];
      for (const group of ordered) {
        if (group.seq <= foldedSeq) continue;
        const before = unfolded[unfolded.length - 1];
        if (before === undefined ? group.seq !== foldedSeq + 1 : group.seq !== before.seq + 1) break;
        unfolded.push(group);
      }
      const kept = unfolded[unfolded.length - 1];
      const nextSeq = (kept?.seq ?? foldedSeq) + 1;
      // Groups past what is replayed (after a torn group or a gap) were never acknowledged, and their seqs are given
      // again: each chain is cut at the first of them (its header zeroed), so no later open reads them.
      const lastSeqOf: [number, number] = [-1, -1];
      let cut = false;
      for (const segment of [0, 1] as const) {
        const chain = chains[segment] as JournalGroup[];
        const stale = chain.findIndex((group) => group.seq >= nextSeq);
        if (stale >= 0) {
          writeSync(handle, Buffer.alloc(SLOT_BYTES), 0, SLOT_BYTES, (chain[stale] as JournalGroup).offset);
          cut = true;
        }
        const live = stale >= 0 ? chain.slice(0, stale) : chain;
        lastSeqOf[segment] = live[live.length - 1]?.seq ?? -1;
      }
      if (cut) fsyncSync(handle);
      // The next group goes after the last one kept (the last replayed, else the last folded, if the journal holds
      // it); when the journal holds neither (new, or lost and replaced), a new chain begins in a segment all folded.
      const after = kept ?? ordered.find((group) => group.seq === foldedSeq);
      const newestEpoch = Math.max(epochOf(chains[0] as JournalGroup[]), epochOf(chains[1] as JournalGroup[]));
      const cursor: Cursor =
        after !== undefined
          ? { epoch: after.epoch, offset: after.offset - (after.epoch % 2) * segmentBytes + after.bytes, seq: nextSeq }
          : { epoch: newestEpoch + 1, offset: 0, seq: nextSeq };
      return { journal: new Journal(handle, segmentBytes, cursor, lastSeqOf), unfolded };
    } catch (error) {
      closeSync(handle);
      throw error;
    }
  }

  /** The seq the next group gets. */
  get nextSeq(): number {
    return this.cursor.seq;
  }

  /** Whether a group of at most `bytes` can be written now (see append). */
  hasRoom(bytes: number, foldedSeq: number): boolean {
    const slots = Math.ceil(bytes / SLOT_BYTES) * SLOT_BYTES;
    if (this.cursor.offset + slots <= this.segmentBytes) return true;
    return (this.lastSeqOf[(this.cursor.epoch + 1) % 2] as number) <= foldedSeq;
  }

  /**
   * Places one group (written in place by the next sync: a copy into the page cache). Null when it does not fit: the
   * current segment is full and the other still holds groups not folded past `foldedSeq`; the caller waits.
   */
  append(records: readonly JournalRecord[], foldedSeq: number): JournalGroup | null {
    let { epoch, offset } = this.cursor;
    const seq = this.cursor.seq;
    let group = encodeGroup(records, epoch, seq);
    if (group.length > this.segmentBytes)
      throw new RangeError(`a group of ${group.length} bytes is larger than a segment`);
    if (offset + group.length > this.segmentBytes) {
      const other = (epoch + 1) % 2;
      if ((this.lastSeqOf[other] as number) > foldedSeq) return null;
      epoch += 1;
      offset = 0;
      group = encodeGroup(records, epoch, seq);
    }
    const segment = epoch % 2;
    const at = segment * this.segmentBytes + offset;
    // Written by the next sync, with the groups appended meanwhile: one write and one fdatasync for all of them.
    this.unwritten.push({ at, bytes: group });
    this.lastSeqOf[segment] = seq;
    this.usedBytes[segment] = Math.max(this.usedBytes[segment] as number, offset + group.length);
    this.cursor = { epoch, offset: offset + group.length, seq: seq + 1 };
    return { seq, epoch, offset: at, bytes: group.length, records: records as JournalRecord[] };
  }

  /**
   * Resolves once everything written so far is durable: an fdatasync begun after the last write. At most two are in
   * flight; a caller beyond that joins the next one, which begins as soon as one of them ends.
   */
  sync(): Promise<void> {
    return new Promise((done, fail) => {
      this.waiting.push({ done, fail });
      if (this.syncsInFlight < MAX_SYNCS_IN_FLIGHT) this.startSync();
    });
  }

  private startSync(): void {
    const waiting = this.waiting;
    if (waiting.length === 0) return;
    this.waiting = [];
    try {
      this.write();
    } catch (error) {
      for (const waiter of waiting) waiter.fail(error as Error);
      return;
    }
    this.syncsInFlight++;
    fdatasync(this.fd, (error) => {
      this.syncsInFlight--;
      for (const waiter of waiting)
        if (error) waiter.fail(error);
        else waiter.done();
      this.startSync();
    });
  }

  /** Writes the groups placed since the last write: each run of adjacent ones with one call. */
  private write(): void {
    const unwritten = this.unwritten;
    this.unwritten = [];
    for (let from = 0; from < unwritten.length;) {
      let to = from + 1;
      // At most 1,024 buffers a call (IOV_MAX).
      while (to < unwritten.length && to - from < 1024) {
        const before = unwritten[to - 1] as { at: number; bytes: Buffer };
        if ((unwritten[to] as { at: number }).at !== before.at + before.bytes.length) break;
        to++;
      }
      const run = unwritten.slice(from, to);
      const buffers = run.map((group) => group.bytes);
      const bytes = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
      const written =
        buffers.length === 1
          ? writeSync(this.fd, buffers[0] as Buffer, 0, bytes, (run[0] as { at: number }).at)
          : writevSync(this.fd, buffers, (run[0] as { at: number }).at);
      if (written !== bytes) throw new Error(`the journal took ${written} of ${bytes} bytes`);
      from = to;
    }
  }

  /**
   * Zeroes everything the journal holds and begins a new chain at the start of the other segment, keeping the seq:
   * what erasure asks (docs/privacy.md), since folded groups still name the identities they held. Only when the caller
   * has every group folded: nothing in the file is needed again, and a crash midway leaves folded groups only, which
   * no open replays. False (nothing done) while a write or sync is pending; the caller tries again.
   */
  wipe(): boolean {
    if (this.syncsInFlight > 0 || this.waiting.length > 0 || this.unwritten.length > 0) return false;
    const zeros = Buffer.alloc(1024 * 1024);
    for (const segment of [0, 1] as const) {
      const used = this.usedBytes[segment];
      for (let at = 0; at < used; at += zeros.length)
        writeSync(this.fd, zeros, 0, Math.min(zeros.length, used - at), segment * this.segmentBytes + at);
      this.usedBytes[segment] = 0;
      this.lastSeqOf[segment] = -1;
    }
    // The zeros reach the disk with the next group's fdatasync, before that group is acknowledged.
    this.cursor = { epoch: this.cursor.epoch + 1, offset: 0, seq: this.cursor.seq };
    return true;
  }

  /** Writes and syncs what is placed, waits for the syncs in flight, then closes the file. */
  async close(): Promise<void> {
    if (this.syncsInFlight > 0 || this.waiting.length > 0 || this.unwritten.length > 0)
      await this.sync().catch(() => {});
    closeSync(this.fd);
  }
}
