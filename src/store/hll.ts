// A HyperLogLog sketch for distinct counts over many days (weekly and monthly actives).
// Hand-written rather than a package: the inputs are HMAC outputs, already uniform, so the sketch
// needs no hash function of its own, and the npm HyperLogLog packages are unmaintained.

/** 2^14 registers: standard error 1.04/sqrt(16384), about 0.81%; 16 KiB per sketch. */
export const HLL_PRECISION = 14;
export const HLL_REGISTERS = 1 << HLL_PRECISION;

/** Adds a pseudonym (16 uniform bytes as a latin1 string) to the registers. */
export function hllAdd(registers: Uint8Array, pseudonym: string): boolean {
  // First 14 bits choose the register; the rank is 1 + leading zeros of the following 48 bits.
  const b0 = pseudonym.charCodeAt(0);
  const b1 = pseudonym.charCodeAt(1);
  const index = (b0 << 6) | (b1 >> 2);
  let rank = 1;
  let bits = b1 & 0x03;
  let bitsLeft = 2;
  let next = 2;
  for (;;) {
    if (bitsLeft === 0) {
      if (next >= 8) break;
      bits = pseudonym.charCodeAt(next++);
      bitsLeft = 8;
    }
    if (bits & (1 << (bitsLeft - 1))) break;
    rank++;
    bitsLeft--;
  }
  if ((registers[index] as number) < rank) {
    registers[index] = rank;
    return true;
  }
  return false;
}

/**
 * Raises each register of `target` to that of `source`: `target` becomes the sketch of the union.
 * Four registers at a time when both are 4-byte aligned: a register holds at most 49, below 128, so
 * setting each byte's top bit before subtracting keeps borrows from crossing bytes, and the top bit
 * that survives says which is larger. A year of weekly and monthly windows merges 13,000 sketches.
 */
export function hllMergeInto(target: Uint8Array, source: Uint8Array): void {
  if (target.byteOffset % 4 !== 0 || source.byteOffset % 4 !== 0) {
    for (let i = 0; i < HLL_REGISTERS; i++) {
      const value = source[i] as number;
      if (value > (target[i] as number)) target[i] = value;
    }
    return;
  }
  const to = new Uint32Array(target.buffer, target.byteOffset, HLL_REGISTERS / 4);
  const from = new Uint32Array(source.buffer, source.byteOffset, HLL_REGISTERS / 4);
  for (let i = 0; i < to.length; i++) {
    const a = to[i] as number;
    const b = from[i] as number;
    // Top bit of each byte: set where a >= b.
    const aWins = ((a | 0x80808080) - b) & 0x80808080;
    const mask = (aWins >>> 7) * 0xff;
    to[i] = ((a & mask) | (b & ~mask)) >>> 0;
  }
}

/** 2^-rank for every rank a register can hold (0 to 49): a table, because Math.pow per register was most of a count. */
const INVERSE_POWERS = Float64Array.from({ length: 64 }, (_, rank) => 2 ** -rank);

/** The estimated number of distinct items, with the small-range (linear counting) correction. */
export function hllCount(registers: Uint8Array): number {
  const m = HLL_REGISTERS;
  let sum = 0;
  let zeros = 0;
  for (let i = 0; i < m; i++) {
    const value = registers[i] as number;
    sum += INVERSE_POWERS[value] as number;
    if (value === 0) zeros++;
  }
  const alpha = 0.7213 / (1 + 1.079 / m);
  const raw = (alpha * m * m) / sum;
  if (raw <= 2.5 * m && zeros > 0) return Math.round(m * Math.log(m / zeros));
  return Math.round(raw);
}
