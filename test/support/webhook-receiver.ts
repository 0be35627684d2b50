// A real HTTP receiver of webhooks on 127.0.0.1 that verifies every request with the standardwebhooks library, and can
// refuse (answer 503) or be down (closed), then come back on the same port.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export const WEBHOOK_SECRET = `whsec_${Buffer.alloc(32, 42).toString('base64')}`;

export interface Received {
  id: string;
  /** The body as parsed (a standard event, or Slack's / Discord's message). */
  body: Record<string, unknown>;
  /** Whether the signature verified (with WEBHOOK_SECRET). */
  verified: boolean;
  headers: Record<string, string>;
}

export interface Receiver {
  readonly url: string;
  /** Every request, in order of arrival (refused ones too). */
  readonly requests: Received[];
  /** The requests answered 2xx. */
  accepted(): Received[];
  /** Answer this status from now on (200: accept). */
  answer(status: number): void;
  /** Closes the server (connections refused) until up(). */
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
  /** Waits until `check` holds of the accepted requests, for at most `ms`. */
  until(check: (accepted: Received[]) => boolean, ms: number, what: string): Promise<Received[]>;
}

export async function startReceiver(secret = WEBHOOK_SECRET): Promise<Receiver> {
  const verifier = new Webhook(secret);
  const requests: Received[] = [];
  const accepted = new Set<Received>();
  let status = 200;
  let server: Server | null = null;
  let port = 0;
  const listen = async () => {
    const next = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const payload = Buffer.concat(chunks).toString('utf8');
        const headers = Object.fromEntries(
          Object.entries(request.headers).map(([name, value]) => [name, String(value)]),
        );
        let verified: boolean;
        try {
          verifier.verify(payload, headers);
          verified = true;
        } catch {
          verified = false;
        }
        const received: Received = {
          id: headers['webhook-id'] ?? '',
          body: JSON.parse(payload) as Record<string, unknown>,
          verified,
          headers,
        };
        requests.push(received);
        if (status >= 200 && status < 300) accepted.add(received);
        response.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'not now');
      });
    });
    await new Promise<void>((resolve) => next.listen(port, '127.0.0.1', resolve));
    port = (next.address() as AddressInfo).port;
    server = next;
  };
  const stop = async () => {
    const current = server;
    server = null;
    if (current === null) return;
    current.closeAllConnections();
    await new Promise<void>((resolve) => current.close(() => resolve()));
  };
  await listen();
  const receiver: Receiver = {
    url: `http://127.0.0.1:${port}/hook`,
    requests,
    accepted: () => requests.filter((request) => accepted.has(request)),
    answer: (next) => {
      status = next;
    },
    down: stop,
    up: listen,
    close: stop,
    async until(check, ms, what) {
      const deadline = Date.now() + ms;
      for (;;) {
        const list = receiver.accepted();
        if (check(list)) return list;
        if (Date.now() > deadline)
          throw new Error(`${what}: not within ${ms} ms; received ${JSON.stringify(requests.map((r) => r.body))}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
  };
  return receiver;
}

/** The standard events among the requests, by type. */
export const ofType = (requests: readonly Received[], type: string): Received[] =>
  requests.filter((request) => request.body.type === type);
