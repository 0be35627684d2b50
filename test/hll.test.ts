// The HyperLogLog sketch's own arithmetic: merging (four registers at a time) and counting.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { HLL_REGISTERS, hllAdd, hllCount, hllMergeInto } from '../src/store/hll.js';

/** Registers as a busy day leaves them: every value a register can hold, 0 to 49. */
function randomRegisters(seed: number, offset = 0): Uint8Array {
  const bytes = new Uint8Array(HLL_REGISTERS + offset).subarray(offset);
  let state = seed;
  for (let i = 0; i < HLL_REGISTERS; i++) bytes[i] = (state = (state * 1103515245 + 12345) % 2 ** 31) % 50;
  return bytes;
}

describe('HyperLogLog sketch', () => {
  it('a merge leaves each register at the larger of the two, aligned or not', () => {
    for (const [seed, offset] of [
      [1, 0],
      [2, 0],
      [3, 1],
      [4, 3],
    ] as const) {
      const target = randomRegisters(seed, offset);
      const source = randomRegisters(seed * 7919, offset === 0 ? 0 : 2);
      const expected = target.map((value, i) => Math.max(value, source[i] as number));
      hllMergeInto(target, source);
      assert.deepEqual([...target], [...expected], `seed ${seed}, offset ${offset}`);
    }
  });

  it('the union of two sketches counts the union of their items', () => {
    const a = new Uint8Array(HLL_REGISTERS);
    const b = new Uint8Array(HLL_REGISTERS);
    const items = Array.from({ length: 30_000 }, () => randomBytes(16).toString('latin1'));
    items.slice(0, 20_000).forEach((item) => hllAdd(a, item));
    items.slice(10_000).forEach((item) => hllAdd(b, item));
    hllMergeInto(a, b);
    const estimate = hllCount(a);
    // Four standard errors (0.81% each): fails by chance about once in 16,000 runs.
    assert.ok(Math.abs(estimate - 30_000) < 30_000 * 0.0325, `estimate ${estimate} of 30,000`);
  });
});
