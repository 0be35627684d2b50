// Caps on open connections, in total and per client address, so idle sockets cannot use up the process's descriptors.
import type { Server } from 'node:http';
import { BlockList, isIPv6, type Socket } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { Config } from '../config.js';
import { parseClientAddress } from '../identity.js';
import type { Metrics } from '../metrics.js';

type Limits = Pick<Config, 'maxConnections' | 'maxConnectionsPerAddress' | 'trustProxy'>;

/**
 * Counts connections where they are accepted, before any byte is read: a caller past its cap is
 * closed at once, so it holds a descriptor for microseconds, not for the request timeout. The total
 * cap is Node's own `server.maxConnections`. The per-address cap is by IPv4 address or IPv6 /64
 * (one subscriber's usual allocation, as the rate limits count) and skips trusted proxies: every
 * connection through a proxy comes from the proxy, so the proxy must cap its clients itself.
 */
export function installConnectionLimits(server: Server, limits: Limits, metrics: Metrics): void {
  server.maxConnections = limits.maxConnections;
  server.on('drop', () => metrics.connectionRefused('total_limit'));
  const proxies = blockListOf(limits.trustProxy);
  // Only addresses with an open connection are here, so it holds at most maxConnections entries.
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    // Reading the peer here also makes Node keep it for the socket's life, so a request handled after its client
    // reset still has its address (request.ip was undefined then). Gone already (reset during the handshake): nothing
    // to count, Node closes it, and a request on it is refused by the guards (CONNECTION_CLOSED).
    // One parse gives the address and its block (a parse of IPv4-mapped IPv6 costs about 3 µs).
    const parsed = parseClientAddress(socket.remoteAddress);
    if (parsed === null) return;
    const { address, block: key } = parsed;
    if (proxies.check(address, isIPv6(address) ? 'ipv6' : 'ipv4')) {
      track(socket, metrics, null);
      return;
    }
    const count = open.get(key) ?? 0;
    if (count >= limits.maxConnectionsPerAddress) {
      metrics.connectionRefused('address_limit');
      socket.destroy();
      return;
    }
    open.set(key, count + 1);
    track(socket, metrics, () => {
      const left = (open.get(key) ?? 1) - 1;
      if (left === 0) open.delete(key);
      else open.set(key, left);
    });
  });
}

function track(socket: Socket, metrics: Metrics, onClose: (() => void) | null): void {
  metrics.connectionOpened();
  socket.once('close', () => {
    metrics.connectionClosed();
    onClose?.();
  });
}

/** The `--trust-proxy` CIDRs (checked at start-up by config.ts) as Node's own address matcher. */
function blockListOf(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    let [network, prefix]: [ipaddr.IPv4 | ipaddr.IPv6, number | null] = cidr.includes('/')
      ? ipaddr.parseCIDR(cidr)
      : [ipaddr.parse(cidr), null];
    // Socket addresses are matched in their canonical form, where an IPv4-mapped address is plain IPv4.
    if (network instanceof ipaddr.IPv6 && network.isIPv4MappedAddress()) {
      network = network.toIPv4Address();
      if (prefix !== null) prefix = Math.max(0, prefix - 96);
    }
    if (prefix === null) list.addAddress(network.toString(), network.kind());
    else list.addSubnet(network.toString(), prefix, network.kind());
  }
  return list;
}
