// The systemd unit of docs/operations.md: the same as deploy/online-stats.service, accepted by systemd, and the
// service starts with its environment, stops on its signal, and exits with a code it does not restart after.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { SECRET, runCli, startServer, tempDir } from './support/app.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const UNIT = readFileSync(join(ROOT, 'deploy', 'online-stats.service'), 'utf8');

/** Every `Key=value` of the unit's [Service] section, in order (a key may repeat). */
function serviceEntries(unit: string): [string, string][] {
  const section = unit.split(/^\[Service\]$/m)[1]?.split(/^\[/m)[0] ?? '';
  return section
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const at = line.indexOf('=');
      return [line.slice(0, at), line.slice(at + 1)];
    });
}
const entries = serviceEntries(UNIT);
const values = (key: string) => entries.filter(([k]) => k === key).map(([, v]) => v);

/** The unit's Environment=, with systemd's %d (the credentials directory) replaced. */
function environment(credentialsDir: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of values('Environment'))
    for (const pair of line.split(' ')) {
      const at = pair.indexOf('=');
      env[pair.slice(0, at)] = pair.slice(at + 1).replaceAll('%d', credentialsDir);
    }
  return env;
}

describe('systemd unit', () => {
  it('docs/operations.md shows the unit that deploy/ ships', () => {
    const docs = readFileSync(join(ROOT, 'docs', 'operations.md'), 'utf8');
    assert.ok(
      docs.includes('```ini\n' + UNIT + '```'),
      'the unit in the docs differs from deploy/online-stats.service',
    );
  });

  it('systemd-analyze verify accepts it, without a warning', { skip: !existsSync('/usr/bin/systemd-analyze') }, () => {
    const dir = tempDir();
    try {
      // verify checks that ExecStart names an executable: point it at one that exists here.
      const bin = join(dir.path, 'online-stats');
      writeFileSync(bin, `#!/bin/sh\nexec "${process.execPath}" "${join(ROOT, 'dist', 'src', 'cli.js')}" "$@"\n`);
      chmodSync(bin, 0o755);
      const unit = join(dir.path, 'online-stats.service');
      writeFileSync(unit, UNIT.replace('/usr/local/bin/online-stats ', `${bin} `));
      const result = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
      assert.equal(result.stderr, '');
      assert.equal(result.status, 0);
    } finally {
      dir.remove();
    }
  });

  it('starts with its environment and credential, stops on its KillSignal with exit 0', async () => {
    const [execStart] = values('ExecStart');
    assert.match(execStart ?? '', /\/online-stats serve$/);
    const dir = tempDir();
    try {
      const credentials = join(dir.path, 'credentials');
      mkdirSync(credentials);
      // LoadCredential=identity-secret:<file> puts the file at %d/identity-secret.
      const [credential] = values('LoadCredential');
      assert.equal(credential?.split(':')[0], 'identity-secret');
      writeFileSync(join(credentials, 'identity-secret'), SECRET, { mode: 0o600 });
      const env = { ...environment(credentials), DATA_DIR: join(dir.path, 'state') };
      assert.equal(environment(credentials).DATA_DIR, `/var/lib/${values('StateDirectory')[0]}`);
      const server = await startServer([], env);
      try {
        const beat = await fetch(`${server.url}/heartbeat`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ client_id: 'a' }),
        });
        assert.equal(beat.status, 200);
        // The key came from the credential: the data directory holds none of its own.
        assert.equal(existsSync(join(dir.path, 'state', 'identity-secret')), false);
        // Another process on the same directory exits 3, which the unit does not restart after.
        const second = await runCli(['serve', '--port', '0'], env);
        assert.equal(second.code, 3, second.stderr);
        assert.ok(values('RestartPreventExitStatus')[0]?.split(' ').includes('3'));
        // A wrong setting exits 2, which it does not restart after either.
        const wrong = await runCli(['serve'], { ...env, PORT: 'eighty' });
        assert.equal(wrong.code, 2, wrong.stderr);
        assert.ok(values('RestartPreventExitStatus')[0]?.split(' ').includes('2'));
      } finally {
        const signal = values('KillSignal')[0] as NodeJS.Signals;
        const stopSeconds = Number(values('TimeoutStopSec')[0]);
        const started = Date.now();
        server.child.kill(signal);
        assert.equal(await server.exited, 0);
        assert.ok(Date.now() - started < stopSeconds * 1000, 'stopped before systemd would SIGKILL it');
      }
    } finally {
      dir.remove();
    }
  });
});
