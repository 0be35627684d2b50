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

/** Bits a rank is counted in: ranks run from 1 to RANK_BITS + 1 (no bit set). */
const RANK_BITS = 48;

/**
 * The estimated number of distinct items: Ertl's improved raw estimator ("New cardinality
 * estimation algorithms for HyperLogLog sketches", 2017, algorithm 6), from the histogram of
 * register values. The classic estimator with linear counting below 2.5 m read 2.4% high near
 * 41,000 (where it switches), against Redis's PFCOUNT (which uses this one); this one has no
 * switch and no bias table, and stays within 0.5% on average at every count.
 */
export function hllCount(registers: Uint8Array): number {
  const m = HLL_REGISTERS;
  const histogram = new Float64Array(RANK_BITS + 2);
  for (let i = 0; i < m; i++) (histogram[registers[i] as number] as number)++;
  let z = m * tau(1 - (histogram[RANK_BITS + 1] as number) / m);
  for (let k = RANK_BITS; k >= 1; k--) z = 0.5 * (z + (histogram[k] as number));
  z += m * sigma((histogram[0] as number) / m);
  return Math.round(((m / (2 * Math.LN2)) * m) / z);
}

function sigma(x: number): number {
  if (x === 1) return Infinity;
  let y = 1;
  let z = x;
  for (;;) {
    x *= x;
    const previous = z;
    z += x * y;
    y += y;
    if (z === previous) return z;
  }
}

function tau(x: number): number {
  if (x === 0 || x === 1) return 0;
  let y = 1;
  let z = 1 - x;
  for (;;) {
    x = Math.sqrt(x);
    const previous = z;
    y *= 0.5;
    z -= (1 - x) ** 2 * y;
    if (z === previous) return z / 3;
  }
}
