// Alert rules and the watcher: the rule syntax with its errors, and the events exact count changes raise.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseRule, parseRules } from '../src/alert-rules.js';
import { AlertRuleError } from '../src/errors.js';
import { AlertWatcher, type AlertEvent, type WatcherSettings, type WatcherState } from '../src/alerts/watcher.js';

const T0 = Date.UTC(2026, 0, 1);
const at = (seconds: number): number => T0 + seconds * 1000;
const iso = (seconds: number): string => new Date(at(seconds)).toISOString();

/** A watcher restored on an empty store at T0 (its restore events taken). */
function watcherOf(
  rules: string[],
  settings: Partial<WatcherSettings> = {},
  counts: ReadonlyMap<string, number> = new Map(),
): AlertWatcher {
  const watcher = new AlertWatcher({
    rules: parseRules(rules),
    channelEvents: false,
    channelVacateDelayMs: 10_000,
    recordCooldownMs: 60_000,
    recordChannels: false,
    ...settings,
  });
  watcher.restore(null, counts, new Map(), T0);
  watcher.take();
  return watcher;
}

/** The alert.* events raised since the last take() (the total's peak.record is always on, and not under test). */
const alertsOf = (watcher: AlertWatcher): AlertEvent[] =>
  watcher.take().filter((event) => event.type.startsWith('alert.'));

/** Events as [type, seconds after T0] for compact comparisons. */
const brief = (events: AlertEvent[]): Array<[string, number]> =>
  events.map((event) => [event.type, (event.atMs - T0) / 1000]);

const roundTrip = (state: WatcherState): WatcherState => JSON.parse(JSON.stringify(state)) as WatcherState;

describe('alert rules', () => {
  it('parse the documented examples', () => {
    assert.deepEqual(parseRule('online > 1000'), {
      text: 'online > 1000',
      channel: null,
      comparison: '>',
      threshold: 1000,
      forMs: 0,
      hysteresis: 0,
    });
    assert.deepEqual(parseRule('online{channel=checkout} < 5 for 10m'), {
      text: 'online{channel=checkout} < 5 for 10m',
      channel: 'checkout',
      comparison: '<',
      threshold: 5,
      forMs: 600_000,
      hysteresis: 0,
    });
    assert.deepEqual(parseRule('online >= 1_000 for 30s hysteresis 50'), {
      text: 'online >= 1000 for 30s hysteresis 50',
      channel: null,
      comparison: '>=',
      threshold: 1000,
      forMs: 30_000,
      hysteresis: 50,
    });
    assert.deepEqual(parseRule('online{channel="game:eu-1"}<=3'), {
      text: 'online{channel=game:eu-1} <= 3',
      channel: 'game:eu-1',
      comparison: '<=',
      threshold: 3,
      forMs: 0,
      hysteresis: 0,
    });
  });

  it('normalise spacing, quotes, separators and durations, so equal rules have equal text', () => {
    assert.equal(parseRule('  online { channel = "a/b.c_d" }>5for1.5h  ').text, 'online{channel=a/b.c_d} > 5 for 90m');
    assert.equal(parseRule('online > 5 for 1.1s hysteresis 0').text, 'online > 5 for 1100ms');
    assert.equal(parseRule('online > 5 for 7d').forMs, 7 * 86_400_000);
    assert.equal(parseRule('online > 1_000_000_000').threshold, 1e9);
    assert.equal(parseRule('online > 5 hysteresis 5').hysteresis, 5);
    assert.equal(parseRule('online >= 5 hysteresis 4').hysteresis, 4);
    assert.equal(parseRule(`online{channel=${'x'.repeat(64)}} > 1`).channel?.length, 64);
  });

  it('reject a repeated rule (same normalised text)', () => {
    assert.throws(
      () => parseRules(['online > 5', 'online < 2', 'online  >  5']),
      (error: unknown) =>
        error instanceof AlertRuleError &&
        error.message === 'alert rule "online  >  5": at 1: the same rule as rule 1 ("online > 5")',
    );
  });

  const errors: Array<[rule: string, position: number, problem: RegExp]> = [
    ['online > ', 9, /^expected a number$/],
    ['online >> 5', 9, /^expected a number$/],
    ['users > 5', 1, /^expected "online"$/],
    ['online{chan=x} > 1', 8, /^expected "channel"$/],
    ['online{channel x} > 1', 16, /^expected "="$/],
    ['online{channel=} > 1', 16, /^expected a channel name/],
    [`online{channel=${'x'.repeat(65)}} > 1`, 16, /at most 64 characters/],
    ['online{channel="a b"} > 1', 18, /^expected a channel name character/],
    ['online{channel=a b} > 1', 18, /^expected "}"$/],
    ['online = 5', 8, /^expected a comparison: >, >=, <, <=$/],
    ['online > five', 10, /^expected a number$/],
    ['online > -5', 10, /^expected a number$/],
    ['online > 5.5', 11, /^expected a whole number$/],
    ['online > 10_00', 13, /"_" may only separate thousands/],
    ['online > 1_000_000_001', 10, /^expected a number from 0 to 1000000000$/],
    ['online < 0', 10, /can never hold/],
    ['online > 5 for 0s', 16, /^a duration must be positive$/],
    ['online > 5 for 8d', 16, /at most 7 days/],
    ['online > 5 for 10min', 18, /^expected a unit: ms, s, m, h or d$/],
    ['online > 5 for soon', 16, /^expected a duration/],
    ['online > 5 for 0.5ms', 16, /whole number of milliseconds/],
    ['online > 5 foo', 12, /^expected "for", "hysteresis" or the end of the rule$/],
    ['online > 5 for 1m for 2m', 19, /^expected "hysteresis" or the end of the rule$/],
    ['online > 5 hysteresis 6', 23, /hysteresis is at most the threshold \(5\)/],
    ['online >= 5 hysteresis 5', 24, /hysteresis is less than the threshold \(5\)/],
  ];
  for (const [rule, position, problem] of errors) {
    it(`reject ${JSON.stringify(rule)} at ${position}`, () => {
      assert.throws(
        () => parseRule(rule),
        (error: unknown) => {
          assert.ok(error instanceof AlertRuleError);
          assert.equal(error.rule, rule);
          assert.equal(error.position, position);
          assert.match(error.problem, problem);
          assert.equal(error.message, `alert rule "${rule}": at ${position}: ${error.problem}`);
          return true;
        },
      );
    });
  }

  it('give the documented messages', () => {
    assert.throws(() => parseRule('online >> 5'), { message: 'alert rule "online >> 5": at 9: expected a number' });
    assert.throws(() => parseRule('users > 5'), { message: 'alert rule "users > 5": at 1: expected "online"' });
  });
});

describe('alert watcher: threshold rules', () => {
  it('fire once the condition held for the whole `for`, at the instant the wait ended', () => {
    const watcher = watcherOf(['online > 10 for 10s']);
    watcher.change('', at(1), 11);
    watcher.advance(at(10.999));
    assert.deepEqual(alertsOf(watcher), []);
    watcher.change('', at(5), 12); // still holding: the wait goes on from 1 s
    watcher.advance(at(30));
    const events = alertsOf(watcher);
    assert.deepEqual(brief(events), [['alert.firing', 11]]);
    assert.deepEqual(events[0]?.data, {
      rule: 'online > 10 for 10s',
      channel: null,
      comparison: '>',
      threshold: 10,
      online: 12,
      since: iso(1),
    });
  });

  it('do not fire when the condition breaks during `for`, and wait afresh when it holds again', () => {
    const watcher = watcherOf(['online > 10 for 10s']);
    watcher.change('', at(1), 11);
    watcher.change('', at(5), 10);
    watcher.advance(at(20));
    assert.deepEqual(alertsOf(watcher), []);
    watcher.change('', at(21), 11);
    watcher.advance(at(30.999));
    assert.deepEqual(alertsOf(watcher), []);
    watcher.advance(at(31));
    assert.deepEqual(brief(alertsOf(watcher)), [['alert.firing', 31]]);
  });

  it('fire a wait that ended before the next change even without advance()', () => {
    const watcher = watcherOf(['online > 10 for 10s']);
    watcher.change('', at(1), 11);
    watcher.change('', at(20), 3);
    const events = alertsOf(watcher);
    assert.deepEqual(brief(events), [
      ['alert.firing', 11],
      ['alert.resolved', 20],
    ]);
    assert.deepEqual(events[1]?.data, {
      rule: 'online > 10 for 10s',
      channel: null,
      online: 3,
      fired_at: iso(11),
      duration_ms: 9000,
    });
  });

  it('resolve as soon as the condition stops holding without hysteresis', () => {
    const watcher = watcherOf(['online{channel=checkout} < 5'], {}, new Map([['checkout', 10]]));
    watcher.change('checkout', at(1), 4);
    watcher.change('checkout', at(2), 4);
    watcher.change('checkout', at(3), 5);
    const events = alertsOf(watcher);
    assert.deepEqual(brief(events), [
      ['alert.firing', 1],
      ['alert.resolved', 3],
    ]);
    assert.equal(events[0]?.data['channel'], 'checkout');
    assert.equal(events[1]?.data['channel'], 'checkout');
  });

  it('resolve only past the hysteresis band', () => {
    const above = watcherOf(['online > 10 hysteresis 3']);
    for (const [second, count] of [
      [1, 11],
      [2, 10],
      [3, 8],
      [4, 12],
      [5, 7],
    ] as const)
      above.change('', at(second), count);
    assert.deepEqual(brief(alertsOf(above)), [
      ['alert.firing', 1],
      ['alert.resolved', 5],
    ]);

    const below = watcherOf(['online <= 4 hysteresis 2']);
    below.change('', at(1), 10); // firing since the restore (the count was 0): 10 is past 4 + 2
    below.change('', at(2), 4);
    below.change('', at(3), 6);
    below.change('', at(4), 7);
    assert.deepEqual(brief(alertsOf(below)), [
      ['alert.resolved', 1],
      ['alert.firing', 2],
      ['alert.resolved', 4],
    ]);
  });

  it('fire and resolve on every crossing when flapping without hysteresis, once with it', () => {
    const flaps = [11, 10, 11, 10, 11, 10];
    const plain = watcherOf(['online > 10']);
    const damped = watcherOf(['online > 10 hysteresis 5']);
    flaps.forEach((count, i) => {
      plain.change('', at(1) + i, count);
      damped.change('', at(1) + i, count);
    });
    assert.deepEqual(
      alertsOf(plain).map((event) => event.type),
      ['alert.firing', 'alert.resolved', 'alert.firing', 'alert.resolved', 'alert.firing', 'alert.resolved'],
    );
    assert.deepEqual(brief(alertsOf(damped)), [['alert.firing', 1]]);
  });

  it('evaluate a channel nobody is on as 0 from the start', () => {
    const watcher = new AlertWatcher({
      rules: parseRules(['online{channel=support} <= 0 for 1m']),
      channelEvents: false,
      channelVacateDelayMs: 0,
      recordCooldownMs: 0,
      recordChannels: false,
    });
    watcher.restore(null, new Map([['', 5]]), new Map(), T0);
    watcher.advance(at(60));
    const events = alertsOf(watcher);
    assert.deepEqual(brief(events), [['alert.firing', 60]]);
    assert.equal(events[0]?.data['online'], 0);
  });
});

describe('alert watcher: records', () => {
  const peaksOf = (online: number, seconds: number | null) =>
    new Map([['', { online, atMs: seconds === null ? null : at(seconds) }]]);

  it('coalesce records within the cooldown: one at once, one when it ends with the latest figure', () => {
    const watcher = watcherOf([], { recordCooldownMs: 60_000 });
    watcher.restore(null, new Map([['', 90]]), peaksOf(100, -1000), at(0));
    assert.deepEqual(watcher.take(), [], 'a first start does not announce the peak the store already had');
    watcher.change('', at(1), 101);
    watcher.change('', at(2), 102);
    watcher.change('', at(3), 103);
    watcher.change('', at(4), 99);
    watcher.advance(at(60.999));
    const first = watcher.take();
    assert.deepEqual(brief(first), [['peak.record', 1]]);
    assert.deepEqual(first[0]?.data, {
      channel: null,
      online: 101,
      at: iso(1),
      previous: { online: 100, at: iso(-1000) },
    });
    watcher.advance(at(61));
    const second = watcher.take();
    assert.deepEqual(brief(second), [['peak.record', 61]]);
    assert.deepEqual(second[0]?.data, {
      channel: null,
      online: 103,
      at: iso(3),
      previous: { online: 101, at: iso(1) },
    });
    watcher.change('', at(200), 104); // the cooldown is over: at once
    assert.deepEqual(brief(watcher.take()), [['peak.record', 200]]);
  });

  it('never announce a record of 0; a fresh install announces its first count above 0', () => {
    const watcher = watcherOf([]);
    watcher.change('', at(1), 0);
    assert.deepEqual(watcher.take(), []);
    watcher.change('', at(2), 1);
    const events = watcher.take();
    assert.deepEqual(brief(events), [['peak.record', 2]]);
    assert.deepEqual(events[0]?.data, { channel: null, online: 1, at: iso(2), previous: null });
  });

  it('announce channel records only with recordChannels', () => {
    const off = watcherOf([]);
    off.change('lobby', at(1), 3);
    assert.deepEqual(off.take(), []);
    const on = watcherOf([], { recordChannels: true });
    on.change('lobby', at(1), 3);
    const events = on.take();
    assert.deepEqual(brief(events), [['peak.record', 1]]);
    assert.equal(events[0]?.data['channel'], 'lobby');
  });
});

describe('alert watcher: channel occupancy', () => {
  it('occupy at once, vacate after the delay, and say nothing for a reload inside the delay', () => {
    const watcher = watcherOf([], { channelEvents: true, channelVacateDelayMs: 10_000 });
    watcher.change('lobby', at(1), 1);
    watcher.change('lobby', at(2), 2);
    const occupied = watcher.take();
    assert.deepEqual(brief(occupied), [['channel.occupied', 1]]);
    assert.deepEqual(occupied[0]?.data, { channel: 'lobby', online: 1, at: iso(1) });

    watcher.change('lobby', at(5), 0);
    watcher.change('lobby', at(7), 1); // a page reload
    watcher.advance(at(30));
    assert.deepEqual(watcher.take(), []);

    watcher.change('lobby', at(40), 0);
    watcher.advance(at(49.999));
    assert.deepEqual(watcher.take(), []);
    watcher.advance(at(50));
    const vacated = watcher.take();
    assert.deepEqual(brief(vacated), [['channel.vacated', 50]]);
    assert.deepEqual(vacated[0]?.data, { channel: 'lobby', at: iso(40), occupied_since: iso(1) });

    // Vacated and occupied again between two changes: both, each at its instant.
    watcher.change('lobby', at(60), 1);
    watcher.change('lobby', at(70), 0);
    watcher.change('lobby', at(90), 4);
    assert.deepEqual(brief(watcher.take()), [
      ['channel.occupied', 60],
      ['channel.vacated', 80],
      ['channel.occupied', 90],
    ]);
  });

  it('raise nothing with channelEvents off', () => {
    const watcher = watcherOf([]);
    watcher.change('lobby', at(1), 1);
    watcher.change('lobby', at(2), 0);
    watcher.advance(at(100));
    assert.deepEqual(watcher.take(), []);
  });

  it('hand out events of one advance() in order of their instants', () => {
    const watcher = watcherOf(['online > 0 for 10s'], {
      channelEvents: true,
      channelVacateDelayMs: 5_000,
      recordCooldownMs: 0,
    });
    watcher.change('', at(1), 1);
    watcher.change('lobby', at(1), 1);
    watcher.change('lobby', at(2), 0);
    watcher.advance(at(100));
    assert.deepEqual(brief(watcher.take()), [
      ['peak.record', 1],
      ['channel.occupied', 1],
      ['channel.vacated', 7],
      ['alert.firing', 11],
    ]);
  });
});

describe('alert watcher: restart', () => {
  const settings: WatcherSettings = {
    rules: parseRules(['online > 10', 'online{channel=lobby} < 2 for 10s']),
    channelEvents: true,
    channelVacateDelayMs: 10_000,
    recordCooldownMs: 60_000,
    recordChannels: false,
  };

  /** Before the restart: the total fired at 1 s (and set a record of 11), lobby is occupied since 2 s. */
  function savedState(): WatcherState {
    const before = new AlertWatcher(settings);
    before.restore(null, new Map(), new Map(), T0);
    before.change('', at(1), 11);
    before.change('lobby', at(2), 3);
    assert.deepEqual(brief(before.take()), [
      ['peak.record', 1],
      ['alert.firing', 1],
      ['channel.occupied', 2],
    ]);
    assert.equal(before.dirty, true);
    const state = roundTrip(before.state());
    assert.equal(before.dirty, false);
    return state;
  }

  it('neither repeats nor forgets: a rule firing stays firing, and resolves later with its fired_at', () => {
    const after = new AlertWatcher(settings);
    after.restore(
      savedState(),
      new Map([
        ['', 12],
        ['lobby', 3],
      ]),
      new Map([['', { online: 11, atMs: at(1) }]]),
      at(30),
    );
    assert.deepEqual(after.take(), [], 'no second firing, occupied or record');
    after.change('', at(40), 10);
    const events = after.take();
    assert.deepEqual(brief(events), [['alert.resolved', 40]]);
    assert.equal(events[0]?.data['fired_at'], iso(1));
    assert.equal(events[0]?.data['duration_ms'], 39_000);
  });

  it('resolve at the restart a rule firing before whose count is now below, and reconcile the rest', () => {
    const after = new AlertWatcher(settings);
    after.restore(savedState(), new Map([['', 5]]), new Map([['', { online: 15, atMs: at(20) }]]), at(30));
    const events = after.take();
    assert.deepEqual(brief(events), [
      ['alert.resolved', 30], // the total is 5
    ]);
    after.advance(at(40));
    assert.deepEqual(brief(after.take()), [
      ['alert.firing', 40], // lobby < 2 held from the restart for 10 s
      ['channel.vacated', 40], // lobby was empty at the restart: vacated once the delay ran from then
    ]);
    after.advance(at(61));
    const record = after.take();
    // 15 was reached while down, after the saved state: announced once the cooldown of the 1 s record ended.
    assert.deepEqual(brief(record), [['peak.record', 61]]);
    assert.deepEqual(record[0]?.data, {
      channel: null,
      online: 15,
      at: iso(20),
      previous: { online: 11, at: iso(1) },
    });
  });

  it('carry a pending vacate over: raised at its instant if still empty, cancelled if occupied again', () => {
    const before = new AlertWatcher(settings);
    before.restore(null, new Map(), new Map(), T0);
    before.change('lobby', at(1), 3);
    before.change('lobby', at(5), 0);
    const state = roundTrip(before.state());

    const empty = new AlertWatcher(settings);
    empty.restore(state, new Map(), new Map(), at(12));
    assert.deepEqual(
      empty.take().filter((event) => event.type.startsWith('channel.')),
      [],
    );
    empty.advance(at(15));
    assert.deepEqual(
      brief(empty.take()).filter(([type]) => type.startsWith('channel.')),
      [['channel.vacated', 15]],
    );

    const back = new AlertWatcher(settings);
    back.restore(state, new Map([['lobby', 2]]), new Map(), at(12));
    back.advance(at(100));
    assert.deepEqual(
      back.take().filter((event) => event.type.startsWith('channel.')),
      [],
    );
  });

  it('resolve an alert whose rule was removed from the settings', () => {
    const after = new AlertWatcher({ ...settings, rules: parseRules(['online > 50']) });
    after.restore(
      savedState(),
      new Map([
        ['', 12],
        ['lobby', 3],
      ]),
      new Map([['', { online: 11, atMs: at(1) }]]),
      at(30),
    );
    const events = after.take();
    assert.deepEqual(brief(events), [['alert.resolved', 30]]);
    assert.equal(events[0]?.data['rule'], 'online > 10');
  });
});

describe('alert watcher: ids and state', () => {
  function run(): AlertEvent[] {
    const watcher = watcherOf(['online > 10', 'online > 5 for 1s'], { channelEvents: true, recordChannels: true });
    for (const [second, count] of [
      [1, 11],
      [1, 10],
      [1, 11],
      [2, 3],
      [3, 12],
    ] as const)
      watcher.change('', at(second), count);
    watcher.change('lobby', at(4), 1);
    watcher.change('lobby', at(5), 0);
    watcher.advance(at(100));
    return watcher.take();
  }

  it('are derived from the events: two watchers fed the same changes give the same ids, all distinct', () => {
    const first = run();
    const second = run();
    assert.ok(first.length >= 8, `${first.length} events`);
    assert.deepEqual(
      first.map((event) => event.id),
      second.map((event) => event.id),
    );
    for (const event of first) assert.match(event.id, /^evt_[0-9a-f]{32}$/);
    assert.equal(
      new Set(first.map((event) => event.id)).size,
      first.length,
      'flapping in one ms still gives distinct ids',
    );
  });

  it('give every webhook.test its own id', () => {
    const watcher = watcherOf([]);
    const a = watcher.testEvent(at(1), 'hello');
    const b = watcher.testEvent(at(1), 'hello');
    assert.notEqual(a.id, b.id);
    assert.match(a.id, /^evt_[0-9a-f]{32}$/);
    assert.deepEqual(a.data, { message: 'hello', at: iso(1) });
    assert.deepEqual(watcher.take(), [], 'a test event is returned, not queued');
  });

  it('mark state dirty only when something worth saving changed', () => {
    const watcher = watcherOf(['online > 10']);
    watcher.change('', at(1), 5); // a record
    watcher.state();
    watcher.change('', at(2), 4);
    watcher.change('', at(3), 5);
    assert.equal(watcher.dirty, false);
    watcher.change('', at(4), 11);
    assert.equal(watcher.dirty, true);
  });

  it('handle a million changes over 10 rules on one series quickly (printed, not asserted)', () => {
    const rules = Array.from({ length: 10 }, (_, i) => `online > ${1000 + i} for ${i + 1}s`);
    const watcher = watcherOf(rules);
    watcher.restore(null, new Map([['', 500]]), new Map([['', { online: 999, atMs: T0 }]]), T0);
    const startedMs = performance.now();
    for (let i = 0; i < 1_000_000; i++) watcher.change('', T0 + i, 400 + (i % 200));
    const elapsedMs = performance.now() - startedMs;
    assert.deepEqual(watcher.take(), []);
    console.log(`# 1e6 changes over 10 rules: ${elapsedMs.toFixed(0)} ms`);
  });
});
