// What every case gets from bench/run.ts: the flags, a progress log, and the seeded directories cases share.
import type { SeededDirs } from './seed.js';

export interface BenchContext {
  /** Seconds of each measured run. */
  durationSeconds: number;
  connections: number;
  /** Largest number of known identities seeded. */
  known: number;
  /** Where case 1's service writes its CPU profile, or null. */
  profileDir: string | null;
  /** Progress, on stderr, so stdout holds only the report. */
  log(message: string): void;
  seeds: SeededDirs;
}
