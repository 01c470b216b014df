/**
 * Key layout: how a consensus key and a store prefix become Redis key names.
 *
 * For a key `k` in bucket `b` under prefix `p`:
 *
 * | Redis key              | type       | holds                                        |
 * |------------------------|------------|----------------------------------------------|
 * | `p:{b}:v:<json(k)>`    | sorted set | one member per version: its 19-digit seqno, score 0 |
 * | `p:{b}:d:<json(k)>`    | hash       | seqno (19 digits) → payload bytes            |
 * | `p:{b}:keys`           | set        | registry: `json(k)` of every key of bucket b ever written |
 * | `p:{b}:epoch`          | string     | the bucket's store epoch marker (see `lua/includes/epoch.lua`) |
 * | `p:{b}:heads`          | channel    | pub/sub: each commit to a key of bucket b, as `<seqno><json(k)>` |
 * | `p:{b}:w:<json(k)>`    | hash       | a lease's wait queue: waiter id → arrival, last seen, ttl (`lua/lease-5.lua`) |
 *
 * A client's ioredis `keyPrefix` comes before all of these: ioredis adds it to the keys, and
 * `KeyNamesCache` to the channel.
 *
 * `json(k)` is `JSON.stringify(k)`: an injective map from every JS string (lone surrogates
 * included) to well-formed text, so keys never collide and read back exactly from the registry.
 * The `{b}` hash tag puts all the Redis keys of one consensus key (its own two, its bucket's
 * registry and epoch marker), and its bucket's channel, into one Redis Cluster slot, which lets a single script touch them all and keeps sharded pub/sub
 * messages on the key's shard. Buckets spread keys evenly (FNV-1a of the key's UTF-16 code units,
 * modulo BUCKETS), and keep the number of registry sets fixed so that `listKeys` knows every set
 * to walk without any cross-slot access. What lives *inside* these
 * keys is known only to the Lua scripts in `lua/`.
 */

/** How many buckets (hash tags, registry sets) a store has. Changing it orphans existing data. */
export const BUCKETS = 1024;

/** The prefix used when the options name none. */
export const DEFAULT_PREFIX = 'consensus';

/** The Redis key names of one consensus key. */
export interface KeyNames {
  /** Sorted set of seqnos. */
  readonly versions: string;
  /** Hash seqno → payload. */
  readonly data: string;
  /** Registry set of the key's bucket. */
  readonly registry: string;
  /** Epoch marker of the key's bucket: it disappears when the store is reset. */
  readonly epoch: string;
  /** The key's bucket, in `[0, BUCKETS)`. */
  readonly bucket: number;
  /** The registry member naming this key. */
  readonly member: string;
  /** Pub/sub channel on which commits to the keys of this bucket are announced. */
  readonly heads: string;
  /** Hash of the waiters queued for a lease on this key (`lease-5.lua`). */
  readonly waiters: string;
}

/** The bucket of a key: FNV-1a (32-bit) over its UTF-16 code units, modulo BUCKETS. */
export function bucketOf(key: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  }
  return (hash >>> 0) % BUCKETS;
}

/** The Redis key names for `key` under `prefix`. */
export function keyNames(prefix: string, key: string): KeyNames {
  const bucket = bucketOf(key);
  const tagged = `${prefix}:{${bucket}}:`;
  const member = JSON.stringify(key);
  return {
    versions: `${tagged}v:${member}`,
    data: `${tagged}d:${member}`,
    registry: `${tagged}keys`,
    epoch: `${tagged}epoch`,
    bucket,
    member,
    heads: `${tagged}heads`,
    waiters: `${tagged}w:${member}`,
  };
}

/** The registry set of one bucket. */
export function registryOf(prefix: string, bucket: number): string {
  return `${prefix}:{${bucket}}:keys`;
}

/** The epoch marker of one bucket. */
export function epochOf(prefix: string, bucket: number): string {
  return `${prefix}:{${bucket}}:epoch`;
}

/** Reads a key back from its registry member. */
export function keyOfMember(member: string | Buffer): string {
  return JSON.parse(typeof member === 'string' ? member : member.toString('utf8')) as string;
}

/** How many keys' Redis key names a cache remembers, and the longest key it remembers. */
const NAMES_CACHE_SIZE = 1024;
const NAMES_CACHE_KEY_LENGTH = 256;

/**
 * The Redis key names of recently used keys under one prefix: building them per call (a hash and
 * a JSON string) measurably slowed every call. Bounded: a worker's working set of keys fits; a
 * scan over many keys just recomputes.
 */
export class KeyNamesCache {
  private readonly recent = new Map<string, KeyNames>();

  /**
   * `channelPrefix` is the client's ioredis `keyPrefix`: ioredis adds it to the KEYS, so the
   * channel `compareAndSet-4.lua` derives from the registry's name carries it; the heads channel
   * named here (for the subscriber, whose connections carry no keyPrefix, and for the scripts that
   * are sent it) gets it too, so it is namespaced like the keys (on a Cluster, in their slot too).
   */
  constructor(private readonly prefix: string, private readonly channelPrefix = '') {}

  get(key: string): KeyNames {
    let names = this.recent.get(key);
    if (names === undefined) {
      names = keyNames(this.prefix, key);
      if (this.channelPrefix !== '') names = { ...names, heads: this.channelPrefix + names.heads };
      if (key.length <= NAMES_CACHE_KEY_LENGTH) {
        if (this.recent.size >= NAMES_CACHE_SIZE) this.recent.clear();
        this.recent.set(key, names);
      }
    }
    return names;
  }
}
