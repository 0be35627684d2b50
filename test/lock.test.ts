// One process per data directory, held by a kernel lock: also across containers, whose PID namespaces both say 1.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { SECRET, lockIsFree, tempDir } from './support/app.js';

const CLI = fileURLToPath(new URL('../dist/src/cli.js', import.meta.url));
/** `unshare` makes PID namespaces only for root: elsewhere this test cannot run, and says so. */
const NAMESPACES =
  process.getuid?.() === 0 && spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0;

interface Contained {
  child: ChildProcess;
  /** Resolves with the exit code once the process ends. */
  exited: Promise<number | string>;
  /** Resolves true once the service listens, false if it exits first. */
  listening: Promise<boolean>;
  stderr(): string;
}

/** The built service in a PID namespace of its own, as in a container: it is process 1 there. */
function contained(dataDir: string): Contained {
  const child = spawn(
    'unshare',
    [
      '--pid',
      '--fork',
      '--mount-proc',
      process.execPath,
      CLI,
      'serve',
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--data-dir',
      dataDir,
      '--identity-secret',
      SECRET,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  const listening = new Promise<boolean>((resolve) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.includes('Server listening at')) resolve(true);
    });
    void exited.then(() => resolve(false));
  });
  return { child, exited, listening, stderr: () => stderr };
}

/** Signals every process of the namespace's group: the service, not only unshare. */
const signal = (process_: Contained, name: NodeJS.Signals) => process.kill(-(process_.child.pid as number), name);

describe('the data directory lock', () => {
  it(
    'held a pid, so two containers on one volume both started: now the second is refused, and a kill frees it',
    { skip: NAMESPACES ? false : 'needs root and unshare for PID namespaces', timeout: 60_000 },
    async () => {
      const dir = tempDir();
      const running: Contained[] = [];
      try {
        const first = contained(dir.path);
        running.push(first);
        assert.ok(await first.listening, first.stderr());
        // Inside its namespace the first is process 1, as the second will be: a pid says nothing here.
        const second = contained(dir.path);
        running.push(second);
        assert.equal(await second.listening, false, 'the second must not start');
        assert.equal(await second.exited, 3, second.stderr());
        assert.match(second.stderr(), /in use by another online-stats process/);
        assert.equal(lockIsFree(dir.path), false);

        // SIGKILL: no release code runs, the kernel drops the lock with the process.
        signal(first, 'SIGKILL');
        await first.exited;
        const third = contained(dir.path);
        running.push(third);
        assert.ok(await third.listening, third.stderr());
        signal(third, 'SIGTERM');
        assert.equal(await third.exited, 0, third.stderr());
        assert.ok(lockIsFree(dir.path), 'a clean stop gives the lock back');
      } finally {
        for (const process_ of running)
          if (process_.child.exitCode === null && process_.child.signalCode === null) signal(process_, 'SIGKILL');
        dir.remove();
      }
    },
  );
});
