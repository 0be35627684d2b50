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

/** Registers holding the maximum of each register of `sketches` (the sketch of the union). */
export function hllMerge(sketches: readonly Uint8Array[]): Uint8Array {
  const merged = new Uint8Array(HLL_REGISTERS);
  for (const sketch of sketches) {
    for (let i = 0; i < HLL_REGISTERS; i++) {
      const value = sketch[i] as number;
      if (value > (merged[i] as number)) merged[i] = value;
    }
  }
  return merged;
}

/** The estimated number of distinct items, with the small-range (linear counting) correction. */
export function hllCount(registers: Uint8Array): number {
  const m = HLL_REGISTERS;
  let sum = 0;
  let zeros = 0;
  for (let i = 0; i < m; i++) {
    const value = registers[i] as number;
    sum += 2 ** -value;
    if (value === 0) zeros++;
  }
  const alpha = 0.7213 / (1 + 1.079 / m);
  const raw = (alpha * m * m) / sum;
  if (raw <= 2.5 * m && zeros > 0) return Math.round(m * Math.log(m / zeros));
  return Math.round(raw);
}
