/**
 * Redis Cluster: which node a key's writes go to, which node connections ASK redirects used, and
 * which node closes fail calls. Only the library's view of ioredis's Cluster; the options that make
 * a Cluster safe for writes are with the other client options in `client.ts`.
 */
import { optionsOf } from './client.js';
import type { RedisClient } from './client.js';
import { indeterminate } from './errors.js';
import { hookAsking, slotPrimaryAddress } from './internals.js';

/** The Redis Cluster slot of a key name: CRC16 (XMODEM) of its hash tag, modulo 16384. */
export function keySlot(key: string): number {
  const bytes = Buffer.from(key, 'utf8');
  let start = 0;
  let end = bytes.length;
  const open = bytes.indexOf(0x7b);
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) {
      start = open + 1;
      end = close;
    }
  }
  let crc = 0;
  for (let i = start; i < end; i++) {
    crc ^= bytes[i]! << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

/**
 * The connection of `cluster` to the primary that serves the slot of `key`: the very connection
 * that carried the slot's last write. ioredis sends a slot's commands to the primary its slot table
 * names, over the node connections that `nodes()` lists. A write redirected with ASK during a slot
 * migration went to the importing node instead: see AskingLog.
 */
export function primaryFor(cluster: RedisClient, key: string): RedisClient {
  const address = slotPrimaryAddress(cluster, keySlot(key));
  // 'all', not 'master': after a failover the pool may still list the promoted node as a replica.
  const primary = cluster.nodes?.('all').find((node) => {
    const { host, port } = optionsOf(node) as { host?: string; port?: number };
    return `${host}:${port}` === address;
  });
  if (primary === undefined) throw indeterminate('unavailable', `no known primary serves the slot of ${key}`);
  return primary;
}

/**
 * Calls `onClose` when any node connection of `cluster` closes, through `listen` (which records the
 * listener for removal). A Cluster node that closes never reconnects unless
 * `clusterNodeRetryStrategy` says so, and ioredis then rejects its in-flight commands itself; only
 * with that option are they dropped unsettled and must be failed here. Failing every call of the
 * Cluster on any node's close would fail calls on healthy nodes too, e.g. on each failed reconnect
 * to a dead primary during a failover.
 */
export function watchNodeCloses(
  cluster: RedisClient,
  onClose: () => void,
  listen: (emitter: RedisClient, event: string, listener: (...args: unknown[]) => void) => void,
): void {
  if (typeof optionsOf(cluster).clusterNodeRetryStrategy !== 'function') return;
  listen(cluster, '+node', (node) => listen(node as RedisClient, 'close', onClose));
  for (const node of cluster.nodes?.('all') ?? []) listen(node, 'close', onClose);
}

/** Node connections already hooked by an AskingLog. */
const hooked = new WeakSet<object>();

/**
 * Which node connections of a Cluster were sent ASKING, in order. ioredis follows an ASK redirect
 * (a slot being migrated, the key already on the importing primary) by sending ASKING and then the
 * command over the importing node's connection, without updating its slot table: a WAIT after that
 * write must go to that connection too, and the slot table does not say so.
 */
export class AskingLog {
  private count = 0;
  private readonly last = new Map<RedisClient, number>();

  constructor(cluster: RedisClient) {
    for (const node of cluster.nodes?.('all') ?? []) this.hook(node);
    cluster.on?.('+node', (node) => this.hook(node as RedisClient));
    cluster.on?.('-node', (node) => this.last.delete(node as RedisClient));
  }

  /** The current point of the log. */
  now(): number {
    return this.count;
  }

  /** The node connections sent ASKING after the point `mark`. */
  since(mark: number): RedisClient[] {
    return [...this.last].filter(([, at]) => at > mark).map(([node]) => node);
  }

  private hook(node: RedisClient): void {
    if (hooked.has(node)) return;
    if (hookAsking(node, () => this.last.set(node, ++this.count))) hooked.add(node);
  }
}
