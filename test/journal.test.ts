// Tests of the SQLite store's heartbeat journal: its file format and replay (torn, corrupted and stale groups, segment
// switches), a store process killed before close, and SIGKILL of the real service during folds and during replay.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Pseudonymizer, clientIdentity } from '../src/identity.js';
import { DATABASE_FILE, SqliteStore, journalPath } from '../src/store/sqlite.js';
import {
  JOURNAL_SUFFIX,
  SLOT_BYTES,
  Journal,
  encodeGroup,
  type JournalGroup,
  type JournalRecord,
} from '../src/store/sqlite/journal.js';
import { SECRET, startServer, storedIdentities, tempDir, type ServerProcess } from './support/app.js';
import {
  DAY_MS,
  LOOK_BACKS,
  T0,
  crashScenario,
  crashStoreOptions,
  identity,
  position,
  type CrashEvent,
  type CrashMode,
} from './support/journal-crash.js';

/** Small segments, so that a few hundred groups switch between them. */
const SEGMENT = 64 * 1024;

/** A group's records: beats without and with channels (a unicode one too), and a leave. */
function recordsOf(n: number, count = 6): JournalRecord[] {
  const records: JournalRecord[] = [];
  for (let k = 0; k < count; k++) {
    const id = identity(n * 1000 + k);
    const atMs = T0 + n * 1000 + k;
    if (k % 5 === 4) records.push({ kind: 'leave', identity: id, atMs });
    else
      records.push({ kind: 'beat', identity: id, atMs, channel: [null, 'lobby', 'salle-été-🎉', 'x'][k % 4] ?? null });
  }
  return records;
}

function patch(path: string, at: number, bytes: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, at);
  } finally {
    closeSync(fd);
  }
}

function read(path: string, at: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, at);
    return buffer;
  } finally {
    closeSync(fd);
  }
}

/** Flips every bit of `length` bytes at `at`. */
function corrupt(path: string, at: number, length = 8): void {
  const bytes = read(path, at, length);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (bytes[i] as number) ^ 0xff;
  patch(path, at, bytes);
}

const seqs = (groups: readonly JournalGroup[]) => groups.map((group) => group.seq);

describe('journal file', () => {
  const dir = tempDir('online-stats-journal-');
  after(() => dir.remove());
  let files = 0;
  const fresh = () => join(dir.path, `j-${files++}.journal`);

  /** Opens, appends `count` groups (numbered from `from`) with `foldedSeq`, syncs and closes. */
  async function write(path: string, foldedSeq: number, count: number, from = 0): Promise<JournalGroup[]> {
    const { journal } = Journal.open(path, foldedSeq, SEGMENT);
    const written: JournalGroup[] = [];
    for (let n = from; n < from + count; n++) {
      const group = journal.append(recordsOf(n), foldedSeq);
      assert.ok(group !== null, `group ${n} fits`);
      written.push(group);
    }
    await journal.sync();
    await journal.close();
    return written;
  }

  /** Reopens and closes: what a restart replays, and the seq it would write next. */
  async function reopen(path: string, foldedSeq: number): Promise<{ unfolded: JournalGroup[]; nextSeq: number }> {
    const { journal, unfolded } = Journal.open(path, foldedSeq, SEGMENT);
    const nextSeq = journal.nextSeq;
    await journal.close();
    return { unfolded, nextSeq };
  }

  it('gives back every group whole and in order, with its records, after a reopen', async () => {
    const path = fresh();
    const special: JournalRecord[] = [
      { kind: 'beat', identity: '\u0000\u00ff\u0080\u00fe'.repeat(4), atMs: T0, channel: null },
      { kind: 'beat', identity: Buffer.alloc(16, 0xff).toString('latin1'), atMs: T0 + 1, channel: '' },
      { kind: 'beat', identity: randomBytes(16).toString('latin1'), atMs: T0 + 2, channel: '頻道-🎉-ü' },
      { kind: 'leave', identity: '\u0000\u00ff\u0080\u00fe'.repeat(4), atMs: T0 + 3 },
      { kind: 'beat', identity: identity(7), atMs: T0 + 4.5, channel: 'c'.repeat(1024) },
    ];
    const { journal, unfolded: none } = Journal.open(path, -1, SEGMENT);
    assert.deepEqual(none, []);
    assert.equal(journal.nextSeq, 0);
    const written: JournalGroup[] = [];
    for (let n = 0; n < 20; n++) written.push(journal.append(n === 3 ? special : recordsOf(n, 1 + (n % 7)), -1)!);
    assert.deepEqual(seqs(written), [...Array(20).keys()]);
    await journal.sync();
    await journal.close();

    const { unfolded, nextSeq } = await reopen(path, -1);
    assert.deepEqual(unfolded, written);
    assert.deepEqual(unfolded[3]?.records, special);
    assert.equal(nextSeq, 20);
    for (const group of unfolded) {
      assert.equal(group.offset % SLOT_BYTES, 0, 'groups start on a slot');
      assert.equal(group.bytes % SLOT_BYTES, 0, 'groups take whole slots');
    }
  });

  it('skips the groups folded already (foldedSeq)', async () => {
    const path = fresh();
    const written = await write(path, -1, 10);
    assert.deepEqual((await reopen(path, 4)).unfolded, written.slice(5));
    assert.deepEqual((await reopen(path, 8)).unfolded, written.slice(9));
    const all = await reopen(path, 9);
    assert.deepEqual(all.unfolded, []);
    assert.equal(all.nextSeq, 10);
  });

  it('drops a group torn in its payload, keeping every group before it', async () => {
    const path = fresh();
    const written = await write(path, -1, 10);
    const last = written[9] as JournalGroup;
    corrupt(path, last.offset + SLOT_BYTES + 20, 4);
    const { unfolded, nextSeq } = await reopen(path, -1);
    assert.deepEqual(unfolded, written.slice(0, 9));
    assert.equal(nextSeq, 9, 'the torn group is written over');
    // Written over by a shorter group: what is left of the torn one after it does not come back.
    const again = await write(path, -1, 1, 100);
    assert.equal(again[0]?.seq, 9);
    assert.equal(again[0]?.offset, last.offset);
    assert.deepEqual((await reopen(path, -1)).unfolded, [...written.slice(0, 9), ...again]);
  });

  it('drops a group whose write stopped part way (a prefix in the file), and nothing after it', async () => {
    const path = fresh();
    const written = await write(path, -1, 5);
    const end = (written[4] as JournalGroup).offset + (written[4] as JournalGroup).bytes;
    const whole = encodeGroup(recordsOf(5, 40), 0, 5);
    const next = encodeGroup(recordsOf(6), 0, 6);
    // Only the first slots of group 5 reached the file, though group 6 after it is whole.
    patch(path, end, whole.subarray(0, 2 * SLOT_BYTES));
    patch(path, end + whole.length, next);
    for (const cut of [SLOT_BYTES - 8, 2 * SLOT_BYTES]) {
      patch(path, end, Buffer.alloc(whole.length));
      patch(path, end, whole.subarray(0, cut));
      const { unfolded, nextSeq } = await reopen(path, -1);
      assert.deepEqual(unfolded, written, `a group cut at ${cut} bytes`);
      assert.equal(nextSeq, 5);
    }
  });

  it('ends the replay at a corrupted group in the middle', async () => {
    const path = fresh();
    const written = await write(path, -1, 10);
    // Its seq (in the header, under the hash).
    corrupt(path, (written[4] as JournalGroup).offset + 16, 1);
    assert.deepEqual((await reopen(path, -1)).unfolded, written.slice(0, 4));
    assert.deepEqual((await reopen(path, 1)).unfolded, written.slice(2, 4));
  });

  it('switches segments only once the other one is folded, and replays across both in seq order', async () => {
    const path = fresh();
    const opened = Journal.open(path, -1, SEGMENT);
    let journal = opened.journal;
    const written: JournalGroup[] = [];
    let n = 0;
    // Segment 1 is empty: the first switch needs nothing folded.
    for (;;) {
      const group = journal.append(recordsOf(n++), -1);
      assert.ok(group !== null, `group ${n - 1} fits`);
      written.push(group);
      if (group.offset >= SEGMENT) break;
    }
    const firstOfSegment1 = written[written.length - 1] as JournalGroup;
    assert.equal(firstOfSegment1.offset, SEGMENT, 'the group that did not fit starts segment 1');
    assert.equal(firstOfSegment1.epoch, 1);
    const lastOfSegment0 = firstOfSegment1.seq - 1;
    assert.ok(lastOfSegment0 > 50, `segment 0 held ${lastOfSegment0 + 1} groups`);
    // Segment 1 fills; segment 0 is not folded, so the next group waits.
    for (;;) {
      const group = journal.append(recordsOf(n), lastOfSegment0 - 1);
      if (group === null) break;
      n++;
      assert.ok(group.offset >= SEGMENT && group.offset + group.bytes <= 2 * SEGMENT);
      written.push(group);
    }
    assert.equal(journal.nextSeq, written.length, 'a refused group takes no seq');
    assert.equal(journal.hasRoom(SLOT_BYTES * 8, lastOfSegment0 - 1), false);
    assert.equal(journal.append(recordsOf(n), lastOfSegment0 - 1), null, 'still refused');
    await journal.sync();
    await journal.close();

    // Nothing folded: both segments, in seq order; and the reopened journal refuses as the first did.
    let reopened = Journal.open(path, -1, SEGMENT);
    journal = reopened.journal;
    assert.deepEqual(reopened.unfolded, written);
    assert.equal(journal.nextSeq, written.length);
    reopened = Journal.open(path, 100, SEGMENT);
    assert.deepEqual(reopened.unfolded, written.slice(101));
    await reopened.journal.close();
    assert.equal(journal.append(recordsOf(n), lastOfSegment0 - 1), null);
    assert.equal(journal.hasRoom(SLOT_BYTES * 8, lastOfSegment0), true);
    // Once segment 0 is folded, the group starts it again, under a new epoch.
    const wrapped = journal.append(recordsOf(n++), lastOfSegment0);
    assert.ok(wrapped !== null);
    assert.equal(wrapped.seq, written.length);
    assert.equal(wrapped.offset, 0);
    assert.equal(wrapped.epoch, 2);
    written.push(wrapped);
    for (let k = 0; k < 30; k++) written.push(journal.append(recordsOf(n++), lastOfSegment0) as JournalGroup);
    await journal.sync();
    await journal.close();
    assert.equal(statSync(path).size, 2 * SEGMENT, 'the file keeps its size');

    // Segment 1, then segment 0's new groups; none of segment 0's old groups (they were folded).
    for (const foldedSeq of [lastOfSegment0, lastOfSegment0 + 40, wrapped.seq - 1, wrapped.seq + 10]) {
      const again = Journal.open(path, foldedSeq, SEGMENT);
      assert.deepEqual(again.unfolded, written.slice(foldedSeq + 1), `replay after ${foldedSeq}`);
      assert.equal(again.journal.nextSeq, written.length);
      await again.journal.close();
    }
  });

  it('drops a torn first group of the newer segment, and starts that segment again with the next group', async () => {
    const path = fresh();
    const { journal } = Journal.open(path, -1, SEGMENT);
    const written: JournalGroup[] = [];
    for (let n = 0; ; n++) {
      const group = journal.append(recordsOf(n), -1) as JournalGroup;
      written.push(group);
      if (group.offset >= SEGMENT) break;
    }
    await journal.sync();
    await journal.close();
    // The group that started segment 1 was cut short (the process killed in its write): only its header slot is there.
    const first = written.pop() as JournalGroup;
    patch(path, first.offset + SLOT_BYTES, Buffer.alloc(first.bytes - SLOT_BYTES));
    const reopened = Journal.open(path, -1, SEGMENT);
    assert.deepEqual(reopened.unfolded, written);
    assert.equal(reopened.journal.nextSeq, first.seq);
    const again = reopened.journal.append(recordsOf(9000), -1);
    assert.deepEqual(again && { seq: again.seq, offset: again.offset, epoch: again.epoch }, {
      seq: first.seq,
      offset: SEGMENT,
      epoch: 1,
    });
    await reopened.journal.sync();
    await reopened.journal.close();
    assert.deepEqual((await reopen(path, -1)).unfolded, [...written, again]);
  });

  it('keeps the groups of the older segment before a torn one, though the newer segment goes on', async () => {
    // The group written last into segment 0 was torn (the next one, at the start of segment 1, is whole): neither was
    // acknowledged, but every group before them was, and must be replayed.
    for (const tornFromEnd of [1, 10]) {
      const path = fresh();
      const { journal } = Journal.open(path, -1, SEGMENT);
      const written: JournalGroup[] = [];
      for (let n = 0; ; n++) {
        const group = journal.append(recordsOf(n), -1) as JournalGroup;
        written.push(group);
        if (group.offset >= SEGMENT) break;
      }
      for (let n = 0; n < 5; n++) written.push(journal.append(recordsOf(5000 + n), -1) as JournalGroup);
      await journal.sync();
      await journal.close();
      const firstOfSegment1 = written.findIndex((group) => group.offset >= SEGMENT);
      const torn = written[firstOfSegment1 - tornFromEnd] as JournalGroup;
      corrupt(path, torn.offset + SLOT_BYTES + 3, 2);
      const { unfolded, nextSeq } = await reopen(path, -1);
      assert.deepEqual(
        seqs(unfolded),
        seqs(written.slice(0, torn.seq)),
        `group ${torn.seq} torn of ${written.length}: groups 0 to ${torn.seq - 1} come back`,
      );
      assert.ok(nextSeq <= torn.seq, `the next group (${nextSeq}) does not skip past the torn one`);
    }
  });

  it('reopens empty once every group is folded, and goes on after foldedSeq', async () => {
    const path = fresh();
    await write(path, -1, 10);
    const folded = await reopen(path, 9);
    assert.deepEqual(folded.unfolded, []);
    assert.equal(folded.nextSeq, 10);
    const more = await write(path, 9, 3, 10);
    assert.deepEqual(seqs(more), [10, 11, 12]);
    assert.deepEqual((await reopen(path, 9)).unfolded, more);
    assert.deepEqual((await reopen(path, 12)).unfolded, []);
    // The database folded past what the journal holds (a journal lost or replaced): seqs go on past foldedSeq.
    const lost = await reopen(path, 500);
    assert.deepEqual(lost.unfolded, []);
    assert.equal(lost.nextSeq, 501);
    const after500 = await write(path, 500, 2, 20);
    assert.deepEqual(seqs(after500), [501, 502]);
    assert.deepEqual((await reopen(path, 500)).unfolded, after500);
    assert.equal(statSync(path).size, 2 * SEGMENT);
  });

  it('keeps erasures and opted-out heartbeats as they were written', async () => {
    const path = fresh();
    const records: JournalRecord[] = [
      { kind: 'beat', identity: identity(1), atMs: T0, channel: 'lobby', hidden: true },
      { kind: 'beat', identity: identity(1), atMs: T0 + 1, channel: null },
      { kind: 'erase', identity: identity(1), atMs: T0 + 2 },
      { kind: 'beat', identity: identity(2), atMs: T0 + 3, channel: null, hidden: true },
    ];
    const { journal } = Journal.open(path, -1, SEGMENT);
    journal.append(records, -1);
    await journal.sync();
    await journal.close();
    assert.deepEqual((await reopen(path, -1)).unfolded[0]?.records, records);
  });

  it('a wipe zeroes every byte once all is folded, and the journal goes on, replaying only what came after', async () => {
    const path = fresh();
    const { journal } = Journal.open(path, -1, SEGMENT);
    // Both segments used, every group folded (through 299).
    for (let n = 0, folded = -1; n < 300; n++)
      assert.ok(journal.append(recordsOf(n), folded) ?? journal.append(recordsOf(n), (folded = n - 1)));
    await journal.sync();
    assert.equal(journal.wipe(), true);
    assert.ok(
      readFileSync(path).every((byte) => byte === 0),
      'nothing is left of any group',
    );
    assert.equal(journal.nextSeq, 300, 'the seq goes on');
    const after = [journal.append(recordsOf(300), 299), journal.append(recordsOf(301), 299)];
    await journal.sync();
    await journal.close();
    const reopened = await reopen(path, 299);
    assert.deepEqual(reopened.unfolded, after);
    assert.equal(reopened.nextSeq, 302);
    assert.deepEqual((await reopen(path, 301)).unfolded, []);
  });

  it('a wipe cut short by a crash leaves folded groups only: nothing replayed, and the seq goes on', async () => {
    const path = fresh();
    await write(path, -1, 40);
    // The first groups zeroed and the rest not, as a crash in the middle of a wipe leaves it.
    patch(path, 0, Buffer.alloc(4096));
    const { unfolded, nextSeq } = await reopen(path, 39);
    assert.deepEqual(unfolded, []);
    assert.equal(nextSeq, 40);
    const more = await write(path, 39, 2, 40);
    assert.deepEqual((await reopen(path, 39)).unfolded, more);
  });

  it('keeps the file at its preallocated size', async () => {
    const path = fresh();
    const { journal } = Journal.open(path, -1, SEGMENT);
    const created = statSync(path);
    assert.equal(created.size, 2 * SEGMENT);
    assert.ok(created.blocks * 512 >= 2 * SEGMENT, `allocated, not sparse (${created.blocks} blocks)`);
    // Groups up to the very end of both segments, a wrap, and a reopen: the size never moves.
    for (let n = 0, folded = -1; n < 600; n++) {
      const group = journal.append(recordsOf(n), folded) ?? journal.append(recordsOf(n), (folded = n - 1));
      assert.ok(group !== null);
      if (n % 50 === 0) await journal.sync();
      assert.equal(statSync(path).size, 2 * SEGMENT);
    }
    await journal.close();
    const again = Journal.open(path, 599, SEGMENT);
    await again.journal.close();
    assert.equal(statSync(path).size, 2 * SEGMENT);
  });
});

/** What the events come to at `nowMs`, worked out on their own (not by the store). */
function expected(events: readonly CrashEvent[], nowMs: number) {
  const timeoutMs = crashStoreOptions.heartbeatTimeoutMs;
  const people = new Map<
    number,
    { firstMs: number; lastMs: number; leftMs: number | null; channels: Map<string, number> }
  >();
  const days = new Map<string, { active: Set<number>; new: number }>();
  for (const event of events) {
    const day = new Date(event.atMs).toISOString().slice(0, 10);
    let person = people.get(event.n);
    if (event.kind === 'leave') {
      if (person) {
        person.leftMs = event.atMs;
        person.channels.clear();
      }
      continue;
    }
    const counts = days.get(day) ?? { active: new Set<number>(), new: 0 };
    days.set(day, counts);
    counts.active.add(event.n);
    if (person === undefined) {
      counts.new++;
      person = { firstMs: event.atMs, lastMs: event.atMs, leftMs: null, channels: new Map() };
      people.set(event.n, person);
    }
    person.lastMs = event.atMs;
    person.leftMs = null;
    if (event.channel !== null) person.channels.set(event.channel, event.atMs);
  }
  const online = [...people.values()].filter((p) => p.leftMs === null && p.lastMs >= nowMs - timeoutMs);
  return {
    people,
    online: online.length,
    lobby: online.filter((p) => (p.channels.get('lobby') ?? -Infinity) >= nowMs - timeoutMs).length,
    activeHour: [...people.values()].filter((p) => p.lastMs >= nowMs - 3_600_000).length,
    activeTwoDays: [...people.values()].filter((p) => p.lastMs >= nowMs - 2 * DAY_MS).length,
    activeSince: LOOK_BACKS.map((sinceMs) => [...people.values()].filter((p) => p.lastMs >= sinceMs).length),
    days: ['2026-03-09', '2026-03-10'].map((day) => ({
      day,
      active: days.get(day)?.active.size ?? 0,
      new: days.get(day)?.new ?? 0,
    })),
  };
}

async function countsOf(store: SqliteStore, nowMs: number) {
  return {
    online: await store.countOnline(nowMs),
    lobby: await store.countOnline(nowMs, 'lobby'),
    activeHour: await store.countActive(nowMs - 3_600_000, nowMs),
    activeTwoDays: await store.countActive(nowMs - 2 * DAY_MS, nowMs),
    activeSince: await Promise.all(LOOK_BACKS.map((sinceMs) => store.countActive(sinceMs, nowMs))),
    days: await store.dailyActivity(['2026-03-09', '2026-03-10']),
  };
}

const CRASH_SCRIPT = fileURLToPath(new URL('./support/journal-crash.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Runs the crash script on `path`; resolves with what it printed before it killed itself. */
async function crashChild(path: string, mode: CrashMode): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, ['--import', 'tsx', CRASH_SCRIPT, path, mode], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.once('exit', (...args) => resolve(args)),
  );
  assert.equal(signal, 'SIGKILL', `the child killed itself (exit ${code}): ${stderr}`);
  const match = /^acked (.*)$/m.exec(stdout);
  assert.ok(match, `the child acknowledged its heartbeats: ${stdout} ${stderr}`);
  return JSON.parse(match[1] as string) as Record<string, unknown>;
}

const meta = position;

describe('a batch whose journal group would be larger than a segment', () => {
  it('is refused alone: not counted, and the next heartbeats are acknowledged', async () => {
    const dir = tempDir('online-stats-journal-big-');
    const store = SqliteStore.open(join(dir.path, 'big.sqlite'), crashStoreOptions, T0);
    try {
      // 20,000 heartbeats on a channel of 1,000 characters: about 20 MB, past the 16 MiB of a segment.
      const channel = 'c'.repeat(1000);
      const beats = Array.from({ length: 20_000 }, (_, n) => ({ identity: identity(n), channel }));
      const outcome = await store.recordHeartbeats(beats, T0).then(
        () => 'acknowledged',
        () => 'refused',
      );
      assert.equal(
        await store.countOnline(T0 + 1),
        outcome === 'acknowledged' ? beats.length : 0,
        `the batch was ${outcome}: it counts only if acknowledged`,
      );
      await store.recordHeartbeats([{ identity: identity(-1), channel: null }], T0 + 2);
    } finally {
      await store.close().catch(() => {});
      dir.remove();
    }
  });
});

describe('a store process killed after its acknowledgements, before close', () => {
  const dirs: { remove(): void }[] = [];
  after(() => dirs.forEach((dir) => dir.remove()));
  const events = crashScenario().flat();
  const nowMs = T0 + 3000;
  const want = expected(events, nowMs);

  for (const [name, mode] of [
    ['with nothing folded', 'acked'],
    ['with day one folded and day two not', 'day-one-folded'],
    ['with day two saved, its fold not in or running', 'day-two-saved'],
  ] as const)
    it(`reopens ${name} to every acknowledged count, and folds every identity at close`, async () => {
      const dir = tempDir('online-stats-journal-crash-');
      dirs.push(dir);
      const path = join(dir.path, 'crash.sqlite');
      const said = await crashChild(path, mode);
      const { foldedBefore, ...before } = said;
      const { days: _days, people: _people, ...counts } = want;
      assert.deepEqual(before, { ...counts, days: want.days }, 'the store counted as worked out before the crash');
      if (mode !== 'acked')
        assert.ok((foldedBefore as number) >= 3, `day one was folded (through ${String(foldedBefore)})`);

      // What the crash left: the database folded through some seq, and the journal holds the rest.
      const db = new Database(path, { readonly: true });
      const folded = meta(db, 'journal-folded');
      const saved = meta(db, 'journal-saved');
      const rows = db.prepare<[], number>('SELECT COUNT(*) FROM identities').pluck().get();
      db.close();
      const left = Journal.open(journalPath(path), folded);
      await left.journal.close();
      if (mode !== 'day-two-saved') assert.ok(left.unfolded.length > 0, 'the crash left groups to replay');
      else assert.equal(saved, 6, 'the aggregates were saved through the last group');
      console.log(
        `${name}: saved through ${saved}, folded through ${folded} (${rows} identities), ` +
          `${left.unfolded.length} groups to replay ` +
          `(${left.unfolded.reduce((sum, group) => sum + group.records.length, 0)} records)`,
      );

      for (let round = 0; round < 2; round++) {
        const store = SqliteStore.open(path, crashStoreOptions, nowMs);
        try {
          assert.deepEqual(await countsOf(store, nowMs), { ...counts, days: want.days }, `open ${round + 1}`);
        } finally {
          await store.close();
        }
        const after = new Database(path, { readonly: true });
        try {
          const stored = new Map(
            after
              .prepare<[], { id: Buffer; first_seen_ms: number; last_seen_ms: number; left_ms: number | null }>(
                'SELECT id, first_seen_ms, last_seen_ms, left_ms FROM identities',
              )
              .all()
              .map((row) => [row.id.toString('latin1'), row]),
          );
          assert.equal(stored.size, want.people.size, 'every identity is in the table');
          for (const [n, person] of want.people) {
            const row = stored.get(identity(n));
            assert.deepEqual(
              row && { first: row.first_seen_ms, last: row.last_seen_ms, left: row.left_ms },
              { first: person.firstMs, last: person.lastMs, left: person.leftMs },
              `identity ${n}`,
            );
          }
          const lobby = after
            .prepare<[number], number>(
              "SELECT COUNT(*) FROM channel_presence WHERE channel = 'lobby' AND last_seen_ms >= ?",
            )
            .pluck()
            .get(nowMs - crashStoreOptions.heartbeatTimeoutMs);
          assert.equal(lobby, want.lobby, 'channel rows');
          const days = after
            .prepare<[], { day: string; active: number; new: number }>('SELECT day, active, new FROM daily_activity')
            .all();
          assert.deepEqual(
            days.sort((a, b) => a.day.localeCompare(b.day)),
            want.days,
          );
          assert.equal(meta(after, 'journal-folded'), meta(after, 'journal-saved'), 'all folded at close');
          const rest = Journal.open(journalPath(path), meta(after, 'journal-folded'));
          await rest.journal.close();
          assert.deepEqual(rest.unfolded, [], 'nothing left to replay after a clean close');
        } finally {
          after.close();
        }
      }
    });
});

const TOKEN = 'journal-test-ingest-token';
const CLI = fileURLToPath(new URL('../dist/src/cli.js', import.meta.url));
const serviceArgs = (dataDir: string) => [
  '--data-dir',
  dataDir,
  '--identity-secret',
  SECRET,
  '--rate-limit',
  'off',
  '--read-rate-limit',
  'off',
  '--address-rate-limit',
  'off',
  '--batch-rate-limit',
  'off',
  '--ingest-token',
  TOKEN,
];

/** POST /heartbeats of `ids`: whether it was acknowledged (200), false when refused or cut off. */
async function postBatch(url: string, ids: readonly string[]): Promise<boolean> {
  try {
    const res = await fetch(`${url}/heartbeats`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ client_ids: ids }),
    });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

/** What a service says of the last day: online now, active, and the daily actives and new of yesterday and today. */
async function serviceCounts(url: string) {
  const get = async (path: string): Promise<Record<string, unknown>> => {
    const res = await fetch(`${url}${path}`);
    assert.equal(res.status, 200, path);
    return (await res.json()) as Record<string, unknown>;
  };
  const online = (await get('/online_clients')).online_clients_count as number;
  const total = (await get('/total_users?days=1')).recent_users_count as number;
  const today = new Date().toISOString().slice(0, 10);
  const yesterday = new Date(Date.now() - DAY_MS).toISOString().slice(0, 10);
  const days = (await get(`/analytics/daily?from=${yesterday}&to=${today}`)).days as { dau: number; new: number }[];
  return {
    online,
    total,
    dau: days.reduce((sum, day) => sum + day.dau, 0),
    new: days.reduce((sum, day) => sum + day.new, 0),
  };
}

/** Where the folds of a killed service stood: folded through, and the groups and records left to replay. */
async function journalState(dataDir: string) {
  const path = join(dataDir, DATABASE_FILE);
  const db = new Database(path, { readonly: true });
  const folded = position(db, 'journal-folded');
  const saved = position(db, 'journal-saved');
  db.close();
  const { journal, unfolded } = Journal.open(journalPath(path), folded);
  await journal.close();
  return { folded, saved, groups: unfolded.length, records: unfolded.reduce((sum, g) => sum + g.records.length, 0) };
}

function spawnService(dataDir: string): ChildProcess {
  return spawn(process.execPath, [CLI, 'serve', '--port', '0', '--host', '127.0.0.1', ...serviceArgs(dataDir)], {
    stdio: 'ignore',
  });
}

/** Waits until process `pid` has the journal open (Linux: /proc/<pid>/fd); resolves with the ms it took. */
async function untilJournalOpen(pid: number, timeoutMs: number): Promise<number> {
  const startedAt = performance.now();
  for (;;) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      // Not there yet, or gone.
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`).endsWith(JOURNAL_SUFFIX)) return performance.now() - startedAt;
      } catch {
        // Closed meanwhile.
      }
    }
    if (performance.now() - startedAt > timeoutMs) assert.fail(`process ${pid} did not open its journal`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Starts the built service and measures the time from spawn to listening. */
async function timedStart(dataDir: string): Promise<{ server: ServerProcess; ms: number }> {
  const startedAt = performance.now();
  const server = await startServer(serviceArgs(dataDir));
  return { server, ms: performance.now() - startedAt };
}

describe('the service killed with SIGKILL (dist/: npm run build first)', () => {
  const dirs: { remove(): void }[] = [];
  const servers: ServerProcess[] = [];
  const pseudonymizer = new Pseudonymizer(SECRET);
  const pseudonym = (clientId: string) => pseudonymizer.pseudonym(clientIdentity(clientId));
  after(() => {
    for (const server of servers) server.child.kill('SIGKILL');
    for (const dir of dirs) dir.remove();
  });

  /** Checks a running service counts every acknowledged id, and at most every id sent; then stops it (SIGTERM). */
  async function countsEveryone(server: ServerProcess, dataDir: string, acked: Set<string>, sent: number) {
    const counts = await serviceCounts(server.url);
    for (const [name, count] of Object.entries(counts)) {
      assert.ok(count >= acked.size, `${name}: ${count} >= ${acked.size} acknowledged`);
      assert.ok(count <= sent, `${name}: ${count} <= ${sent} sent`);
    }
    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0, server.stderr());
    const stored = storedIdentities(dataDir);
    const missing = [...acked].filter((id) => !stored.has(pseudonym(id)));
    assert.deepEqual(missing.slice(0, 10), [], `${missing.length} acknowledged ids are not in the database`);
    return counts;
  }

  it('loses nothing acknowledged when killed while folds run, and restarts quickly', async () => {
    const dir = tempDir('online-stats-journal-fold-');
    dirs.push(dir);
    const first = await startServer(serviceArgs(dir.path));
    servers.push(first);
    const acked = new Set<string>();
    let sent = 0;
    let running = true;
    const loops = Array.from({ length: 6 }, async (_, loop) => {
      for (let n = 0; running; n++) {
        const ids = Array.from({ length: 2000 }, (_, k) => `fold-${loop}-${n}-${k}`);
        sent += ids.length;
        if (await postBatch(first.url, ids)) for (const id of ids) acked.add(id);
      }
    });
    // Well past the first folds (one starts every 16,384 records), then at a random moment.
    const deadline = Date.now() + 15_000;
    while (acked.size < 100_000 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 300));
    first.child.kill('SIGKILL');
    await first.exited;
    running = false;
    await Promise.all(loops);
    const state = await journalState(dir.path);
    console.log(`killed during folds: ${acked.size} of ${sent} acknowledged; journal ${JSON.stringify(state)}`);
    assert.ok(acked.size >= 50_000, `enough load to mean something (${acked.size} acknowledged)`);
    assert.ok(state.folded >= 0, 'folds had run before the kill');

    const { server, ms } = await timedStart(dir.path);
    servers.push(server);
    console.log(`restart replaying ${state.records} records: listening after ${Math.round(ms)} ms`);
    assert.ok(ms < 10_000, `listening ${Math.round(ms)} ms after the start`);
    const counts = await countsEveryone(server, dir.path, acked, sent);
    console.log(`after the restart: ${JSON.stringify(counts)}`);
  });

  it('loses nothing acknowledged when killed again while the restart replays and folds', async () => {
    const dir = tempDir('online-stats-journal-replay-');
    dirs.push(dir);
    const first = await startServer(serviceArgs(dir.path));
    servers.push(first);
    const batches = Array.from({ length: 12 }, (_, b) => Array.from({ length: 10_000 }, (_, k) => `replay-${b}-${k}`));
    const results = await Promise.all(batches.map((ids) => postBatch(first.url, ids)));
    // Killed as soon as the last is acknowledged: the fold has had no time for most of them.
    first.child.kill('SIGKILL');
    await first.exited;
    assert.deepEqual(
      results,
      batches.map(() => true),
      'every batch acknowledged',
    );
    const acked = new Set(batches.flat());
    const state = await journalState(dir.path);
    console.log(`killed after the acknowledgements: ${JSON.stringify(state)}`);
    assert.ok(state.records >= 20_000, `a large journal to replay (${state.records} records)`);

    // A restart killed as soon as it has the journal open: while it replays.
    const replaying = spawnService(dir.path);
    const opened = await untilJournalOpen(replaying.pid as number, 15_000);
    replaying.kill('SIGKILL');
    const replayingExit = await new Promise((resolve) => replaying.once('exit', (_code, signal) => resolve(signal)));
    assert.equal(replayingExit, 'SIGKILL');
    console.log(
      `killed ${Math.round(opened)} ms after its start, the journal open: ${JSON.stringify(await journalState(dir.path))}`,
    );

    // One killed as soon as it listens (its first save and fold just begun), one 100 ms later (while that fold runs,
    // or just after: the state printed says which).
    for (const delayMs of [0, 100]) {
      const { server, ms } = await timedStart(dir.path);
      servers.push(server);
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      server.child.kill('SIGKILL');
      await server.exited;
      console.log(
        `restart listening after ${Math.round(ms)} ms, killed ${delayMs} ms later: ` +
          JSON.stringify(await journalState(dir.path)),
      );
      assert.ok(ms < 10_000, `listening ${Math.round(ms)} ms after the start, with a journal to replay`);
    }

    const { server: last, ms: lastMs } = await timedStart(dir.path);
    servers.push(last);
    console.log(`last restart: listening after ${Math.round(lastMs)} ms`);
    const counts = await countsEveryone(last, dir.path, acked, acked.size);
    assert.deepEqual(counts, { online: acked.size, total: acked.size, dau: acked.size, new: acked.size });
  });
});

describe('the WAL under a steady stream of new identities', () => {
  it('stays bounded: the fold checkpoints it, and no reader keeps it from starting over', async () => {
    const dir = tempDir('online-stats-journal-wal-');
    const path = join(dir.path, 'wal.sqlite');
    const store = SqliteStore.open(path, crashStoreOptions, T0);
    try {
      // 160,000 new identities in batches, over a few seconds of folds. A view held on a read transaction once kept the
      // WAL from ever starting over: 560 MB after 30 s of the service under load. Checkpointed by the fold, it stays
      // near one fold's pages.
      let largest = 0;
      for (let batch = 0; batch < 80; batch++) {
        const beats = Array.from({ length: 2000 }, () => ({
          identity: randomBytes(16).toString('latin1'),
          channel: null,
        }));
        await store.recordHeartbeats(beats, T0 + batch);
        if (batch % 10 === 9) await new Promise((resolve) => setTimeout(resolve, 300));
        largest = Math.max(largest, statSync(`${path}-wal`).size);
      }
      console.log(`largest WAL: ${(largest / 1e6).toFixed(1)} MB`);
      assert.ok(largest < 64e6, `the WAL reached ${(largest / 1e6).toFixed(1)} MB`);
      assert.equal(await store.countOnline(T0 + 80), 160_000);
    } finally {
      await store.close();
      dir.remove();
    }
  });
});
