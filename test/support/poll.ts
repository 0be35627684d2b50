// Polling for what a running service does after its answer (a group commit, a settle round): waits for it, bounded.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

/** Polls until `check` holds on the answer of `probe`, for at most `ms`; the answer, or a failure naming `what`. */
export async function until<T>(
  probe: () => Promise<T>,
  check: (answer: T) => boolean,
  ms: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const answer = await probe();
    if (check(answer)) return answer;
    if (Date.now() > deadline) assert.fail(`${what}: still ${JSON.stringify(answer)} after ${ms} ms`);
    await sleep(200);
  }
}
