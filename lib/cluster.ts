/**
 * Redis Cluster: the client options that make a `Cluster` safe for writes, and opening one.
 *
 * A Cluster node connection that closes fails its in-flight commands with "Connection is
 * closed.", and ioredis's Cluster, by default (`retryDelayOnFailover: 100`), sends such a command
 * again to whatever node then serves the slot: a compare-and-set that committed just before a
 * primary died could run a second time. `retryDelayOnFailover: 0` turns that off; redirects that
 * Redis answers before running a command (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) are still followed.
 */
import { Cluster } from 'ioredis';
import type { ClusterNode, ClusterOptions } from 'ioredis';
import { determinate } from './errors.js';
import { SAFE_WRITE_OPTIONS } from './link.js';

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

/**
 * Connects a Cluster client made safe for writes to the cluster that `nodes` belong to, and waits
 * until it knows the slots.
 *
 * @throws ExternalError (determinate) when the cluster cannot be reached.
 */
export async function openCluster(nodes: ClusterNode[], options: ClusterOptions = {}): Promise<Cluster> {
  const cluster = new Cluster(nodes, { ...safeClusterOptions(options), lazyConnect: true });
  cluster.on('error', () => {
    // Node errors surface on the calls that meet them; ioredis refreshes the slots by itself.
  });
  try {
    await cluster.connect();
  } catch (err) {
    cluster.disconnect();
    throw determinate(`could not connect to the Redis Cluster: ${(err as Error).message}`, err);
  }
  return cluster;
}
