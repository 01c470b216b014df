/**
 * Opening the clients `RedisConsensus.connect` and `connectCluster` own: made with the library's
 * connection defaults and write-safety settings, ready (or refused) within the deadline, and the
 * server checked before the store uses it (database index, eviction policy).
 */
import { Cluster, Redis } from 'ioredis';
import type { ClusterNode, ClusterOptions, RedisOptions } from 'ioredis';
import { openClient, OWN_CONNECTION_DEFAULTS, redactUrl, SAFE_WRITE_OPTIONS, safeClusterOptions } from './client.js';
import { checkEvictionPolicy, checkMinReplicas, databaseOf, selectDatabase } from './checks.js';
import type { EvictionPolicyAction } from './checks.js';
import type { DurabilityOptions, Observer } from './types.js';

/** What opening needs of the store's settings. */
export interface OpenSettings {
  readonly timeoutMs: number;
  readonly evictionPolicy: EvictionPolicyAction;
  readonly signal: AbortSignal | undefined;
  /** With durability set, primaries without `min-replicas-to-write` are warned about to `observer`. */
  readonly durability?: DurabilityOptions | undefined;
  readonly observer?: Observer | undefined;
}

/**
 * A standalone (or Sentinel) client of the store's own, ready, on the right database, its
 * eviction policy checked. `redisOptions` go to ioredis as they are, apart from the safety settings.
 *
 * @throws ExternalError (determinate) when Redis cannot be reached in time or is refused.
 */
export async function openRedis(url: string, settings: OpenSettings, redisOptions: RedisOptions): Promise<Redis> {
  const where = redactUrl(url);
  const db = redisOptions.db ?? databaseOf(url);
  const client = new Redis(url, { ...OWN_CONNECTION_DEFAULTS, ...redisOptions, ...SAFE_WRITE_OPTIONS, lazyConnect: true });
  await openClient(client, where, {
    timeoutMs: settings.timeoutMs,
    signal: settings.signal,
    check: async (opened) => {
      if (db !== undefined && db !== 0) await selectDatabase(opened, db, where);
      await checkEvictionPolicy([opened], settings.evictionPolicy, where);
      if (settings.durability !== undefined) await checkMinReplicas([opened], where, settings.observer);
    },
  });
  return client;
}

/**
 * A Cluster client of the store's own, ready (it knows the slots), every primary's eviction policy
 * checked. `clusterOptions` go to ioredis as they are, apart from the safety settings.
 *
 * @throws ExternalError (determinate) when the cluster cannot be reached in time or is refused.
 */
export async function openCluster(nodes: ClusterNode[], settings: OpenSettings, clusterOptions: ClusterOptions): Promise<Cluster> {
  const withDefaults = { ...clusterOptions, redisOptions: { ...OWN_CONNECTION_DEFAULTS, ...clusterOptions.redisOptions } };
  const cluster = new Cluster(nodes, { ...safeClusterOptions(withDefaults), lazyConnect: true });
  await openClient(cluster, 'the Redis Cluster', {
    timeoutMs: settings.timeoutMs,
    signal: settings.signal,
    check: async (opened) => {
      await checkEvictionPolicy(opened.nodes('master'), settings.evictionPolicy, 'a Redis Cluster primary');
      if (settings.durability !== undefined) await checkMinReplicas(opened.nodes('master'), 'a Redis Cluster primary', settings.observer);
    },
  });
  return cluster;
}
