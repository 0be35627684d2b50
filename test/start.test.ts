// `npm start`: serves the built service without compiling it again, and stopping npm stops the server.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { SECRET, lockIsFree, tempDir } from './support/app.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

describe('npm start', () => {
  it(
    'recompiled on every start and left the server running when npm was stopped: now neither',
    {
      timeout: 60_000,
    },
    async () => {
      const dir = tempDir();
      // npm test builds dist/ first, so it is current here.
      const npm = spawn(
        'npm',
        ['start', '--', '--port', '0', '--host', '127.0.0.1', '--data-dir', dir.path, '--identity-secret', SECRET],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      try {
        let stderr = '';
        npm.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        const exited = new Promise<number | string>((resolve) =>
          npm.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
        );
        const startedMs = Date.now();
        const url = await new Promise<string>((resolve, reject) => {
          createInterface({ input: npm.stdout }).on('line', (line) => {
            const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
            if (match) resolve(match[1] as string);
          });
          void exited.then((code) => reject(new Error(`npm start exited (${code}): ${stderr}`)));
        });
        assert.doesNotMatch(stderr, /building dist/, 'dist/ was current: nothing was compiled');
        assert.ok(Date.now() - startedMs < 10_000, `started in ${Date.now() - startedMs} ms, no 13 s build`);
        assert.equal((await fetch(`${url}/healthz`)).status, 200);
        assert.equal(lockIsFree(dir.path), false, 'the server holds the data directory');

        npm.kill('SIGTERM');
        assert.equal(await exited, 0, stderr);
        // The server was npm's own process (exec), so it is gone with it: the port and the lock are free.
        await assert.rejects(fetch(`${url}/healthz`), 'nothing listens any more');
        assert.ok(lockIsFree(dir.path), 'the data directory was released');
      } finally {
        npm.kill('SIGKILL');
        dir.remove();
      }
    },
  );
});
