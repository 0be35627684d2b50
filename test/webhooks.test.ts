// Alerts and webhooks against the real service and a real receiver that verifies every signature: rules firing and
// resolving, records, channel occupancy, test events, retries while the receiver is down, delivery after SIGKILL,
// Slack's format, the routes' credentials, and bad settings refused at start.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { startServer, tempDir, type ServerProcess } from './support/app.js';
import { runRefusal } from './support/instances.js';
import { until } from './support/poll.js';
import { WEBHOOK_SECRET, ofType, startReceiver, type Receiver } from './support/webhook-receiver.js';

const TOKEN = 'webhooks-test-token-0123456789';
const auth = { authorization: `Bearer ${TOKEN}` };
const running: ServerProcess[] = [];
const receivers: Receiver[] = [];
const dirs: { remove(): void }[] = [];
after(async () => {
  for (const server of running) if (server.child.exitCode === null) server.child.kill('SIGKILL');
  for (const receiver of receivers) await receiver.close();
  for (const dir of dirs) dir.remove();
});

async function receiver(): Promise<Receiver> {
  const started = await startReceiver();
  receivers.push(started);
  return started;
}

async function serve(args: readonly string[], dataDir?: string): Promise<ServerProcess> {
  const dir = dataDir ?? tempDir().path;
  const server = await startServer([
    '--data-dir',
    dir,
    '--read-rate-limit',
    'off',
    '--address-rate-limit',
    'off',
    '--api-token',
    TOKEN,
    '--webhook-secret',
    WEBHOOK_SECRET,
    ...args,
  ]);
  running.push(server);
  return server;
}

const beat = (server: ServerProcess, clientId: string, channel?: string) =>
  fetch(`${server.url}/heartbeat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(channel === undefined ? { client_id: clientId } : { client_id: clientId, channel }),
  }).then((response) => assert.equal(response.status, 200));
const leave = (server: ServerProcess, clientId: string) =>
  fetch(`${server.url}/leave`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_id: clientId }),
  }).then((response) => assert.equal(response.status, 200));
const deliveries = async (server: ServerProcess, status: string) =>
  (
    (await (await fetch(`${server.url}/webhooks/deliveries?status=${status}`, { headers: auth })).json()) as {
      deliveries: { event_id: string; type: string; attempts: number; last_status: number | null; status: string }[];
    }
  ).deliveries;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('alerts and webhooks on the real service', () => {
  it('a rule fires when clients come and resolves when they time out; every delivery is signed', async () => {
    const hook = await receiver();
    const server = await serve(['--heartbeat-timeout', '2s', '--alert', 'online >= 3', '--webhook-url', hook.url]);
    const startedMs = Date.now();
    for (const id of ['a', 'b', 'c']) await beat(server, id);
    const [firing] = ofType(
      await hook.until((got) => ofType(got, 'alert.firing').length === 1, 5000, 'alert.firing'),
      'alert.firing',
    );
    assert.ok(firing);
    assert.deepEqual(
      { ...(firing.body.data as object), since: undefined },
      { rule: 'online >= 3', channel: null, comparison: '>=', threshold: 3, online: 3, since: undefined },
    );
    assert.ok(Date.parse(firing.body.timestamp as string) >= startedMs - 1000);
    // Nobody beats again: 2 s later the count falls below 3 at the first timeout, with no request to say so.
    const [resolved] = ofType(
      await hook.until((got) => ofType(got, 'alert.resolved').length === 1, 8000, 'alert.resolved'),
      'alert.resolved',
    );
    assert.ok(resolved);
    const data = resolved.body.data as { rule: string; online: number; fired_at: string; duration_ms: number };
    assert.equal(data.rule, 'online >= 3');
    assert.equal(data.online, 2);
    assert.equal(data.fired_at, firing.body.timestamp);
    // The first client timed out 2 s after its heartbeat, a little before 2 s after the third one.
    assert.ok(data.duration_ms > 1500 && data.duration_ms < 3000, `resolved ${data.duration_ms} ms after firing`);
    // The first record (1 online) at once; the higher ones wait for the cooldown (10 minutes by default).
    const records = ofType(hook.accepted(), 'peak.record');
    assert.equal(records.length, 1);
    assert.equal((records[0]?.body.data as { online: number }).online, 1);
    for (const request of hook.requests) {
      assert.equal(request.verified, true, `signature of ${request.id}`);
      assert.match(request.id, /^evt_[0-9a-f]{32}$/);
    }
    assert.equal(new Set(hook.requests.map((r) => r.id)).size, hook.requests.length, 'one delivery per event');
    const delivered = await deliveries(server, 'delivered');
    assert.deepEqual(
      new Set(delivered.map((d) => d.event_id)),
      new Set(hook.requests.map((r) => r.id)),
      'the outbox lists every delivered event',
    );
    const metrics = await (await fetch(`${server.url}/metrics`, { headers: auth })).text();
    assert.match(metrics, /^online_stats_webhook_events_total\{type="alert\.firing"\} 1$/m);
    assert.match(metrics, /^online_stats_webhook_deliveries_total\{result="delivered"\} 3$/m);
    assert.match(metrics, /^online_stats_webhook_outbox_pending 0$/m);
  });

  it('channel.occupied and channel.vacated, and a reload within the vacate delay fires neither', async () => {
    const hook = await receiver();
    const server = await serve([
      '--channel-events',
      'on',
      '--channel-vacate-delay',
      '1500ms',
      '--webhook-url',
      hook.url,
      '--rate-limit',
      'off',
    ]);
    await beat(server, 'reader', 'article-1');
    await hook.until((got) => ofType(got, 'channel.occupied').length === 1, 5000, 'occupied');
    // A page reload: the client leaves and is back 100 ms later.
    await leave(server, 'reader');
    await sleep(100);
    await beat(server, 'reader', 'article-1');
    await sleep(2500);
    assert.equal(ofType(hook.accepted(), 'channel.vacated').length, 0, 'no vacated for a reload');
    assert.equal(ofType(hook.accepted(), 'channel.occupied').length, 1, 'no second occupied for a reload');
    await leave(server, 'reader');
    const [vacated] = ofType(
      await hook.until((got) => ofType(got, 'channel.vacated').length === 1, 5000, 'vacated'),
      'channel.vacated',
    );
    const data = vacated?.body.data as { channel: string; at: string };
    assert.equal(data.channel, 'article-1');
    assert.ok(Date.parse(vacated?.body.timestamp as string) - Date.parse(data.at) >= 1500, 'after the delay');
  });

  it('the receiver refusing, then back, gets every event; after a SIGKILL the restarted service delivers the rest', async () => {
    const hook = await receiver();
    hook.answer(503);
    const dir = tempDir();
    dirs.push(dir);
    const args = ['--alert', 'online > 1', '--webhook-url', hook.url];
    let server = await serve(args, dir.path);
    await beat(server, 'x');
    await beat(server, 'y');
    const test = await fetch(`${server.url}/webhooks/test`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ message: 'is anyone there?' }),
    });
    assert.equal(test.status, 202);
    const { event_id: testId } = (await test.json()) as { event_id: string };
    // Attempted and refused: pending with their attempts and the last status.
    const deadline = Date.now() + 5000;
    let pending = await deliveries(server, 'pending');
    while (!(pending.length === 3 && pending.every((d) => d.attempts >= 1)) && Date.now() < deadline) {
      await sleep(200);
      pending = await deliveries(server, 'pending');
    }
    assert.deepEqual(new Set(pending.map((d) => d.type)), new Set(['alert.firing', 'peak.record', 'webhook.test']));
    assert.ok(pending.every((d) => d.last_status === 503));
    // Killed with all three undelivered; the receiver comes back; the service too.
    server.child.kill('SIGKILL');
    await server.exited;
    hook.answer(200);
    server = await serve(args, dir.path);
    const got = await hook.until((list) => list.length === 3, 10_000, 'the three events after the restart');
    assert.deepEqual(new Set(got.map((r) => r.id)), new Set(pending.map((d) => d.event_id)));
    assert.ok(got.some((r) => r.id === testId));
    assert.ok(got.every((r) => r.verified));
    const test2 = got.find((r) => r.id === testId);
    assert.equal((test2?.body.data as { message: string }).message, 'is anyone there?');
    // The restart announced nothing again: the rule was firing and still is (both clients are online).
    await sleep(1500);
    assert.equal(ofType(hook.accepted(), 'alert.firing').length, 1, 'the rule fired once');
    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0);
  });

  it('a receiver that is down (connection refused) gets the event once it is back', async () => {
    const hook = await receiver();
    await hook.down();
    const server = await serve(['--webhook-url', hook.url]);
    const test = await fetch(`${server.url}/webhooks/test`, { method: 'POST', headers: auth });
    assert.equal(test.status, 202);
    const { event_id: eventId } = (await test.json()) as { event_id: string };
    const deadline = Date.now() + 5000;
    let pending = await deliveries(server, 'pending');
    while (!(pending[0]?.attempts ?? 0) && Date.now() < deadline) {
      await sleep(200);
      pending = await deliveries(server, 'pending');
    }
    const waiting = pending[0];
    assert.ok(waiting, 'the test event waits in the outbox');
    assert.equal(waiting.event_id, eventId);
    assert.equal(waiting.last_status, null, 'no HTTP answer');
    const listed = (await (
      await fetch(`${server.url}/webhooks/deliveries?status=pending`, { headers: auth })
    ).json()) as { deliveries: { last_error: string | null; next_attempt: string | null }[] };
    assert.equal(listed.deliveries[0]?.last_error, 'ECONNREFUSED');
    assert.ok(listed.deliveries[0]?.next_attempt !== null, 'a next attempt is due');
    await hook.up();
    const [got] = await hook.until((list) => list.length === 1, 10_000, 'the event once the receiver is up');
    assert.equal(got?.id, eventId);
    assert.equal(got?.verified, true);
    // The receiver's 2xx is recorded with the next group commit, a moment after the receiver has the event.
    await until(
      () => deliveries(server, 'pending'),
      (list) => list.length === 0,
      2000,
      'the outbox once delivered',
    );
  });

  it("Slack's format: a readable text, signed all the same", async () => {
    const hook = await receiver();
    const server = await serve(['--webhook-url', hook.url, '--webhook-format', 'slack']);
    const test = await fetch(`${server.url}/webhooks/test`, { method: 'POST', headers: auth });
    assert.equal(test.status, 202);
    const [message] = await hook.until((got) => got.length === 1, 5000, 'the Slack message');
    assert.deepEqual(Object.keys(message?.body ?? {}), ['text']);
    assert.match(message?.body.text as string, /online-stats test/);
    assert.equal(message?.verified, true);
  });

  it('the webhook routes need the API token, and say when none is configured or no receiver is', async () => {
    const hook = await receiver();
    const server = await serve(['--webhook-url', hook.url]);
    assert.equal((await fetch(`${server.url}/webhooks/test`, { method: 'POST' })).status, 401);
    assert.equal((await fetch(`${server.url}/webhooks/deliveries`)).status, 401);
    const bad = await fetch(`${server.url}/webhooks/deliveries?status=lost`, { headers: auth });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { message: string }).message, /status/);

    const dir = tempDir();
    dirs.push(dir);
    const open = await startServer([
      '--data-dir',
      dir.path,
      '--webhook-url',
      hook.url,
      '--webhook-secret',
      WEBHOOK_SECRET,
    ]);
    running.push(open);
    const refused = await fetch(`${open.url}/webhooks/test`, { method: 'POST' });
    assert.equal(refused.status, 403);
    assert.match(((await refused.json()) as { message: string }).message, /--api-token/);

    const none = await serve([]);
    const off = await fetch(`${none.url}/webhooks/test`, { method: 'POST', headers: auth });
    assert.equal(off.status, 409);
    assert.match(((await off.json()) as { message: string }).message, /--webhook-url/);
  });

  it('bad rules, URLs and secrets stop the start with exit 2, naming the setting and the position', async () => {
    const url = ['--webhook-url', 'http://127.0.0.1:9/hook', '--webhook-secret', WEBHOOK_SECRET];
    const cases: [string[], RegExp][] = [
      [[...url, '--alert', 'online >> 5'], /--alert.*at 9: expected a number/],
      [[...url, '--alert', 'users > 5'], /--alert.*at 1: expected "online"/],
      [[...url, '--alert', 'online > 5 for 0s'], /--alert/],
      [['--webhook-url', 'ftp://example.test/x', '--webhook-secret', WEBHOOK_SECRET], /--webhook-url.*not an http/],
      [['--webhook-url', 'http://127.0.0.1:9/hook'], /--webhook-secret.*required/],
      [['--webhook-url', 'http://127.0.0.1:9/hook', '--webhook-secret', 'not-a-secret'], /--webhook-secret.*whsec_/],
      [['--alert', 'online > 5'], /--alert.*needs --webhook-url/],
    ];
    for (const [args, message] of cases) {
      const dir = tempDir();
      dirs.push(dir);
      const { code, stderr } = await runRefusal(['--data-dir', dir.path, ...args]);
      assert.equal(code, 2, args.join(' '));
      assert.match(stderr, message, args.join(' '));
    }
    // In the environment, several rules separated by ";"; one bad one names itself.
    const dir = tempDir();
    dirs.push(dir);
    const { code, stderr } = await runRefusal(['--data-dir', dir.path, ...url], {
      ALERTS: 'online > 100; online{channel=checkout} < 5 for 10m; online{channel=} > 1',
    });
    assert.equal(code, 2);
    assert.match(stderr, /ALERTS.*online\{channel=\} > 1/);
  });
});
