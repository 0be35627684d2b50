// The identity secret and the data belong together: a lost, replaced or overridden secret is refused at start.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { defaultConfig } from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import { serve } from '../src/server.js';

describe('identity secret', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'os-secret-'));
  after(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = (overrides = {}) =>
    defaultConfig({ dataDir, port: 0, host: '127.0.0.1', logLevel: 'silent', ...overrides });
  const mismatch = (error: unknown) =>
    error instanceof ConfigError &&
    /--identity-secret/.test(error.message) &&
    /different identity secret/.test(error.message);

  it('a lost or overridden identity secret stops start-up instead of counting every user again', async () => {
    const first = await serve(config());
    await first.app.inject({ method: 'POST', url: '/heartbeat' });
    await first.stop();
    const secretFile = join(dataDir, 'identity-secret');
    const original = readFileSync(secretFile, 'utf8');

    await assert.rejects(serve(config({ identitySecret: 'x'.repeat(40) })), mismatch, 'an overriding secret');
    unlinkSync(secretFile);
    await assert.rejects(serve(config()), mismatch, 'a lost secret file (a new one is made, and refused)');

    writeFileSync(secretFile, original);
    const restored = await serve(config());
    try {
      const total = (await restored.app.inject({ url: '/total_users?days=1' })).json();
      assert.equal(total.recent_users_count, 1, 'with the secret back, the known user is the same user');
    } finally {
      await restored.stop();
    }
  });
});
