// No raw address or client id reaches the disk: the data directory holds pseudonyms only.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import ipaddr from 'ipaddr.js';
import { testApp } from './support/app.js';

describe('privacy at rest', () => {
  it('the database files hold no caller address or client id, in any encoding', async () => {
    const t = await testApp({ ingestRateLimit: null, trustProxy: Object.freeze(['10.0.0.1']) });
    const addresses = ['203.0.113.77', '198.51.100.201', '2001:db8::dead:beef'];
    const clientIds = ['very-unique-client-id-42', 'user@example.com'];
    for (const address of addresses) {
      await t.app.inject({ method: 'POST', url: '/heartbeat', remoteAddress: address, payload: { channel: 'lobby' } });
      await t.app.inject({
        method: 'POST',
        url: '/heartbeat',
        remoteAddress: '10.0.0.1',
        headers: { 'x-forwarded-for': address },
      });
    }
    for (const id of clientIds)
      await t.app.inject({
        method: 'POST',
        url: '/heartbeat',
        remoteAddress: addresses[0] as string,
        headers: { 'x-client-id': id },
      });
    await t.app.inject({ method: 'POST', url: '/leave', remoteAddress: addresses[1] as string });
    assert.equal(
      (await t.app.inject({ url: '/online_clients', remoteAddress: '192.0.2.1' })).json().online_clients_count,
      4,
    );
    const dataDir = t.dataDir;
    // Read the files while the store is still open (WAL included), then again after close.
    const scan = () => {
      const files = readdirSync(dataDir).filter((name) => name !== 'identity-secret');
      assert.ok(files.some((name) => name.endsWith('.sqlite')));
      const needles: Buffer[] = [];
      for (const text of [...addresses, ...clientIds])
        needles.push(Buffer.from(text, 'utf8'), Buffer.from(text, 'utf16le'));
      for (const address of addresses) needles.push(Buffer.from(ipaddr.parse(address).toByteArray()));
      for (const name of files) {
        const bytes = readFileSync(join(dataDir, name));
        for (const needle of needles)
          assert.equal(bytes.indexOf(needle), -1, `${name} holds ${needle.toString('hex')}`);
      }
    };
    scan();
    await t.app.close();
    await t.app.deps.store.close();
    scan();
    await t.close();
  });
});
