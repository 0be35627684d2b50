// The concurrency answer written as bytes says exactly what JSON.stringify of the same answer says.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pointsJson, roundedMean } from '../src/routes/points-json.js';
import type { ConcurrencyPoint } from '../src/store/store.js';

const stringified = (interval: string, channel: string | null, points: readonly ConcurrencyPoint[]) =>
  JSON.stringify({
    interval,
    channel,
    points: points.map((p) => ({
      start: new Date(p.startMs).toISOString(),
      max: p.max,
      min: p.min,
      mean: roundedMean(p.mean),
    })),
  });

describe('the concurrency answer as bytes', () => {
  it('equals JSON.stringify for random points, whole and fractional means, any channel name', () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const startMs = Date.UTC(2026, 11, 2, 17, 0);
    for (let round = 0; round < 200; round++) {
      const points: ConcurrencyPoint[] = Array.from({ length: Math.floor(random() * 60) }, (_, n) => {
        const max = Math.floor(random() * (round % 2 === 0 ? 50 : 5_000_000));
        const min = Math.floor(random() * (max + 1));
        const mean = random() < 0.2 ? min : min + random() * (max - min);
        // Minutes, hours and, now and then, an instant that is not a whole minute.
        const offset = round % 3 === 0 ? n * 3_600_000 : n * 60_000 + (random() < 0.05 ? 1234 : 0);
        return { startMs: startMs + offset, max, min, mean };
      });
      const channel = round % 4 === 0 ? null : round % 4 === 1 ? 'checkout' : round % 4 === 2 ? 'räume "α"' : 'a\\b';
      const interval = ['minute', 'hour', 'day'][round % 3] as string;
      const bytes = pointsJson(interval, channel, points);
      assert.equal(bytes.toString('utf8'), stringified(interval, channel, points), `round ${round}`);
    }
  });

  it('writes an empty series and the edge means (0.0005 rounds up, 0.0004 down, 2.5, 1e-9)', () => {
    const points = [0.0005, 0.0004, 2.5, 1e-9, 3.9996, 10.05, 7].map((mean, n) => ({
      startMs: Date.UTC(2026, 0, 1, 0, n),
      max: 10,
      min: 0,
      mean,
    }));
    assert.equal(pointsJson('minute', null, points).toString(), stringified('minute', null, points));
    assert.equal(pointsJson('minute', null, []).toString(), '{"interval":"minute","channel":null,"points":[]}');
  });
});
