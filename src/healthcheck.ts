// `online-stats healthcheck`: one GET /readyz against the service on this machine, for a container's HEALTHCHECK
// or a probe that can only run a command.

import type { Config } from './config.js';

const TIMEOUT_MS = 2000;

/** Where a client on this machine reaches an address the service listens on (any address: loopback). */
function localHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

export async function checkReady(
  config: Pick<Readonly<Config>, 'host' | 'port'>,
): Promise<{ ready: boolean; message: string }> {
  const url = `http://${localHost(config.host)}:${config.port}/readyz`;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    const body = await response.text();
    if (response.ok) return { ready: true, message: `ready: ${url} answered ${response.status}` };
    return { ready: false, message: `not ready: ${url} answered ${response.status} ${body.slice(0, 200)}` };
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
    return { ready: false, message: `not ready: ${url} did not answer (${cause})` };
  }
}
