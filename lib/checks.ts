/**
 * Checks of the server a store is about to use, made at `connect` / `connectCluster` (within the
 * connect deadline) and by `RedisConsensus.check()` for clients passed in:
 *
 * - the eviction policy: under `allkeys-*` Redis may evict any key at `maxmemory`, e.g. a key's
 *   payload hash while its seqnos survive, and a history would silently lose versions (or commit
 *   seqno 0 twice after losing them all). `volatile-*` policies evict only keys with a TTL, and the
 *   store sets none; `noeviction` refuses writes instead (OOM, a determinate error).
 * - the database a URL names: ioredis selects it after connecting and, when the index is out of
 *   range, only emits an error event and carries on in database 0.
 * - with `durability` set, `min-replicas-to-write` on the primaries: at 0 a primary cut off from
 *   its replicas keeps accepting writes, which a failover then drops (only warned about: through
 *   the observer's `warning` hook and the debug log).
 */
import { checkDatabase } from './arguments.js';
import type { RedisClient } from './client.js';
import { debug } from './debug.js';
import { codeOf, determinate, toExternal } from './errors.js';
import type { Observer } from './types.js';

/** What to do when the server may evict the store's keys. */
export type EvictionPolicyAction = 'refuse' | 'warn';

/** Reads `maxmemory_policy` from the text of `INFO memory` (CONFIG GET may be refused by an ACL). */
export function policyOf(info: string): string | undefined {
  return /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
}

/** Whether a policy may evict keys that have no TTL (the store's keys have none). */
export function evictsKeysWithoutTtl(policy: string): boolean {
  return policy.startsWith('allkeys-');
}

/**
 * Reads the eviction policy of every server in `servers` and refuses (or warns about) one that may
 * evict the store's keys. Servers that do not report a policy (ioredis-mock) pass. A server whose
 * ACL refuses INFO is refused too (`permission`), or only warned about when `action` is `warn`.
 *
 * @throws ExternalError (determinate, code `eviction-policy`) when `action` is `refuse`; as for a
 *   read (code `permission` when an ACL refuses INFO) when the policy cannot be read.
 */
export async function checkEvictionPolicy(servers: RedisClient[], action: EvictionPolicyAction, where: string): Promise<void> {
  for (const server of servers) {
    let info: unknown;
    try {
      info = await server.call?.('INFO', 'memory');
    } catch (err) {
      // An ACL without +info: ioredis skips its ready check then, but the policy stays unknown.
      if (action === 'refuse' || codeOf(err) !== 'permission') {
        throw toExternal(err, false, `reading the eviction policy of ${where} (INFO memory; an ACL user needs +info, ` +
          "or evictionPolicy: 'warn')");
      }
      process.emitWarning(`could not read the maxmemory-policy of ${where}: ${(err as Error).message}`,
        { code: 'REDIS_CONSENSUS_EVICTION_POLICY' });
      continue;
    }
    const policy = typeof info === 'string' ? policyOf(info) : undefined;
    debug('maxmemory-policy of %s: %s', where, policy ?? '(not reported)');
    if (policy === undefined || !evictsKeysWithoutTtl(policy)) continue;
    const problem = `${where} has maxmemory-policy ${policy}: at maxmemory Redis may evict this store's ` +
      'keys and lose committed versions. Use noeviction (or a volatile-* policy: the store sets no TTL)';
    if (action === 'refuse') {
      throw determinate('eviction-policy', `${problem}, or pass evictionPolicy: 'warn' to accept the risk`);
    }
    process.emitWarning(problem, { code: 'REDIS_CONSENSUS_EVICTION_POLICY' });
  }
}

/**
 * With `durability` set: warns (observer `warning`, debug log) about each primary of `servers` whose
 * `min-replicas-to-write` is 0, read from `INFO replication` (which reports `min_slaves_good_slaves`
 * only when it is set; CONFIG GET may be refused by an ACL). A server that cannot be asked, or is
 * no primary, is passed over: this never fails a connect.
 */
export async function checkMinReplicas(servers: RedisClient[], where: string, observer: Observer | undefined): Promise<void> {
  for (const server of servers) {
    let info: unknown;
    try {
      info = await server.call?.('INFO', 'replication');
    } catch (err) {
      debug('could not read INFO replication of %s: %s', where, (err as Error).message);
      continue;
    }
    if (typeof info !== 'string' || !/^role:master\b/m.test(info) || /^min_slaves_good_slaves:/m.test(info)) continue;
    const message = `${where} has min-replicas-to-write 0 while durability is set: a primary cut off from its ` +
      'replicas (a partition, a pause) keeps accepting writes, which then fail indeterminate (replicas-short) and ' +
      'are lost in the failover, with the commits other processes read from it. Set min-replicas-to-write 1 and ' +
      'min-replicas-max-lag 10 (docs/deployment.md, "Replicas and durability")';
    debug('%s', message);
    observer?.warning?.({ code: 'min-replicas-to-write', message });
  }
}

/**
 * How ioredis reads a connection string (its `parseURL`): a port alone, a Unix socket path, or a
 * URL (`redis://`, `rediss://`, `//host`, or `host:port` read as `redis://host:port`).
 * @throws RangeError when ioredis could not read it: a URL it cannot parse, or a username or
 *   password that is not valid percent-encoding (`%zz`). The message never shows the URL.
 */
export function readRedisUrl(url: string): { readonly url: URL | undefined; readonly pathIsDatabase: boolean } {
  if (/^\d+$/.test(url)) return { url: undefined, pathIsDatabase: false };
  // ioredis would read `http://...` as `redis://http//...`, a host named `http` and a socket path.
  const scheme = /^([a-z][a-z\d+.-]*):\/\//i.exec(url)?.[1];
  if (scheme !== undefined && !/^rediss?$/i.test(scheme)) {
    throw new RangeError(`a Redis URL must start with redis:// or rediss://; got ${JSON.stringify(`${scheme}://`)}`);
  }
  const hasProtocol = /^rediss?:\/\//i.test(url);
  const protocolRelative = url.startsWith('//');
  let parsed: URL;
  try {
    if (url.startsWith('/') && !protocolRelative) parsed = new URL(`redis://socket${url}`);
    else parsed = new URL(hasProtocol ? url : protocolRelative ? `redis:${url}` : `redis://${url}`);
  } catch {
    throw new RangeError('the Redis URL cannot be parsed (expected redis://[[username]:password@]host[:port][/db]; ' +
      'it is not shown, as it may hold a password)');
  }
  try {
    decodeURIComponent(parsed.username);
    decodeURIComponent(parsed.password);
  } catch {
    throw new RangeError('the username or password in the Redis URL is not valid percent-encoding ' +
      "(a '%' must start %XX; write '%' itself as %25)");
  }
  return { url: parsed, pathIsDatabase: hasProtocol || protocolRelative };
}

/**
 * The database a connection names, if any: the URL's path (`redis://host/2`), else its `?db=`, else
 * `redisOptions.db`, in ioredis's order. Every one given is checked, the overridden ones included.
 * @throws RangeError when one is not a non-negative integer (`redis://host/abc`, `?db=abc`,
 *   `db: -1`), or the URL cannot be read (see `readRedisUrl`).
 */
export function databaseOf(url: string, optionsDb?: unknown): number | undefined {
  const { url: parsed, pathIsDatabase } = readRedisUrl(url);
  const given: [unknown, string][] = [];
  const path = parsed?.pathname.slice(1) ?? '';
  if (pathIsDatabase && path !== '') given.push([path, "the Redis URL's path"]);
  const query = parsed?.searchParams.get('db');
  if (query !== undefined && query !== null) given.push([query, "the Redis URL's ?db="]);
  if (optionsDb !== undefined) given.push([optionsDb, 'redisOptions.db']);
  let db: number | undefined;
  for (const [value, where] of given) {
    // What a URL holds is not shown: a misplaced password would be.
    const index = checkDatabase(value, where, where === 'redisOptions.db');
    db ??= index;
  }
  return db;
}

/**
 * Selects database `db` and fails when the server has no such database, instead of carrying on in
 * database 0 as ioredis does.
 *
 * @throws ExternalError (determinate, code `wrong-database`; `permission` when an ACL refuses SELECT).
 */
export async function selectDatabase(client: { select(db: number): Promise<unknown> }, db: number, where: string): Promise<void> {
  try {
    await client.select(db);
  } catch (err) {
    if (codeOf(err) === 'permission') throw toExternal(err, false, `selecting database ${db} of ${where} (an ACL user needs +select)`);
    throw determinate('wrong-database', `${where} has no database ${db}: ${(err as Error).message}`, err);
  }
}
