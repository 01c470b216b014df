/**
 * Opening the clients `RedisConsensus.connect` and `connectCluster` own: made with the library's
 * connection defaults and write-safety settings, ready (or refused) within the deadline, and the
 * server checked before the store uses it (database index, eviction policy). Their arguments are
 * checked before anything is made, and no error they throw shows a password.
 */
import { Cluster, Redis } from 'ioredis';
import type { ClusterNode, ClusterOptions, RedisOptions } from 'ioredis';
import { checkCallOptions, checkOptionsObject, describe } from './arguments.js';
import { openClient, OWN_CONNECTION_DEFAULTS, redactUrl, SAFE_WRITE_OPTIONS, safeClusterOptions } from './client.js';
import { checkEvictionPolicy, checkMinReplicas, databaseOf, readRedisUrl, selectDatabase } from './checks.js';
import type { EvictionPolicyAction } from './checks.js';
import { redactCause } from './errors.js';
import type { ConnectOptions, DurabilityOptions, Observer } from './types.js';
import { guardSockets } from './internals.js';

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
 * Checks the arguments of `connect(url, options, redisOptions)` before anything is made. Only
 * `undefined` means the default URL (a default parameter): an empty string, e.g. an empty
 * `REDIS_URL`, must not land on localhost.
 *
 * @throws TypeError for a URL that is not a non-empty string, options that are not objects, a
 *   signal that is not an AbortSignal.
 * @throws RangeError for a URL ioredis cannot read, or a database index that is not a
 *   non-negative integer.
 */
export function checkConnectArguments(url: unknown, options: unknown, redisOptions: unknown): void {
  checkCallOptions(options as ConnectOptions | undefined, 'options');
  if (typeof url !== 'string' || url === '') {
    throw new TypeError(`url must be a non-empty string (or undefined for the default); got ${
      url === '' ? 'an empty string' : describe(url)}`);
  }
  databaseOf(url, checkOptionsObject<RedisOptions>(redisOptions, 'redisOptions')?.db);
}

/**
 * Checks the arguments of `connectCluster(nodes, options, clusterOptions)` before anything is made.
 * @throws TypeError for nodes that are not a non-empty array, options that are not objects, a
 *   signal that is not an AbortSignal.
 */
export function checkClusterArguments(nodes: unknown, options: unknown, clusterOptions: unknown): void {
  checkCallOptions(options as ConnectOptions | undefined, 'options');
  if (!Array.isArray(nodes) || nodes.length === 0) {
    throw new TypeError(`nodes must be a non-empty array of cluster nodes; got ${Array.isArray(nodes) ? 'an empty array' : describe(nodes)}`);
  }
  checkOptionsObject(checkOptionsObject<ClusterOptions>(clusterOptions, 'clusterOptions')?.redisOptions, 'clusterOptions.redisOptions');
}

/** The passwords a connection was given, to scrub from what its failures show. */
function secretsOf(url: string | undefined, options: RedisOptions | undefined): string[] {
  const secrets: string[] = [];
  if (typeof options?.password === 'string') secrets.push(options.password);
  const parsed = url === undefined ? undefined : readRedisUrl(url).url;
  if (parsed !== undefined && parsed.password !== '') secrets.push(parsed.password, decodeURIComponent(parsed.password));
  const query = parsed?.searchParams.get('password');
  if (typeof query === 'string' && query !== '') secrets.push(query);
  // The credentials as written, wherever the parser put them (a path, a host).
  const userinfo = url === undefined ? undefined : /\/\/([^/?#]*)@/.exec(url)?.[1];
  if (userinfo !== undefined) secrets.push(userinfo, userinfo.slice(userinfo.indexOf(':') + 1));
  return secrets;
}

/**
 * A standalone (or Sentinel) client of the store's own, ready, on the right database, its
 * eviction policy checked. `redisOptions` go to ioredis as they are, apart from the safety settings.
 *
 * @throws RangeError for a database index that is not a non-negative integer (before connecting).
 * @throws ExternalError (determinate) when Redis cannot be reached in time or is refused.
 */
export async function openRedis(url: string, settings: OpenSettings, redisOptions: RedisOptions): Promise<Redis> {
  const where = redactUrl(url);
  const db = databaseOf(url, redisOptions.db);
  const secrets = secretsOf(url, redisOptions);
  // The database checked is the one ioredis selects (its order: path, ?db=, redisOptions.db).
  const client = new Redis(url, {
    ...OWN_CONNECTION_DEFAULTS, ...redisOptions, ...SAFE_WRITE_OPTIONS, lazyConnect: true, ...(db === undefined ? {} : { db }),
  });
  guardSockets(client);
  try {
    await openClient(client, where, {
      timeoutMs: settings.timeoutMs,
      signal: settings.signal,
      check: async (opened) => {
        if (db !== undefined && db !== 0) await selectDatabase(opened, db, where);
        await checkEvictionPolicy([opened], settings.evictionPolicy, where);
        if (settings.durability !== undefined) await checkMinReplicas([opened], where, settings.observer);
      },
    });
  } catch (err) {
    throw redactCause(err, secrets);
  }
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
  const secrets = secretsOf(undefined, clusterOptions.redisOptions);
  for (const node of nodes) {
    if (typeof node === 'string' && !/^\d+$/.test(node)) secrets.push(...secretsOf(node, undefined));
  }
  const cluster = new Cluster(nodes, { ...safeClusterOptions(withDefaults), lazyConnect: true });
  guardSockets(cluster);
  try {
    await openClient(cluster, 'the Redis Cluster', {
      timeoutMs: settings.timeoutMs,
      signal: settings.signal,
      check: async (opened) => {
        await checkEvictionPolicy(opened.nodes('master'), settings.evictionPolicy, 'a Redis Cluster primary');
        if (settings.durability !== undefined) await checkMinReplicas(opened.nodes('master'), 'a Redis Cluster primary', settings.observer);
      },
    });
  } catch (err) {
    throw redactCause(err, secrets);
  }
  return cluster;
}
