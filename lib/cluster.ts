/**
 * Redis Cluster: the client options that make a `Cluster` safe for writes, and where writes went.
 *
 * A Cluster node connection that closes fails its in-flight commands with "Connection is
 * closed.", and ioredis's Cluster, by default (`retryDelayOnFailover: 100`), sends such a command
 * again to whatever node then serves the slot: a compare-and-set that committed just before a
 * primary died could run a second time. `retryDelayOnFailover: 0` turns that off; redirects that
 * Redis answers before running a command (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) are still followed.
 */
import type { ClusterOptions } from 'ioredis';
import { SAFE_WRITE_OPTIONS } from './link.js';
import type { RedisClient } from './link.js';

/** Cluster options that make an ioredis Cluster safe for writes (node options apart). */
export const SAFE_CLUSTER_OPTIONS = { retryDelayOnFailover: 0 } as const;

/** `options` with what makes a Cluster never re-send a write, on the cluster and on its nodes. */
export function safeClusterOptions(options: ClusterOptions = {}): ClusterOptions {
  return {
    ...options,
    ...SAFE_CLUSTER_OPTIONS,
    redisOptions: { ...options.redisOptions, ...SAFE_WRITE_OPTIONS },
  };
}

/** Node connections already hooked by an AskingLog. */
const hooked = new WeakSet<object>();

/**
 * Which node connections of a Cluster were sent ASKING, in order. ioredis follows an ASK redirect
 * (a slot being migrated, the key already on the importing primary) by sending ASKING and then the
 * command over the importing node's connection, without updating its slot map: a WAIT after that
 * write must go to that connection too, and the slot map does not say so.
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
    const methods = node as unknown as { asking?: (...args: unknown[]) => unknown };
    const asking = methods.asking;
    if (typeof asking !== 'function' || hooked.has(node)) return;
    hooked.add(node);
    // ioredis calls `asking()` on the node right before sending the redirected command on it.
    methods.asking = (...args: unknown[]) => {
      this.last.set(node, ++this.count);
      return asking.apply(node, args);
    };
  }
}
