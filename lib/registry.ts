/**
 * Walking the registry: the sets of every key ever committed, one per bucket (see layout.ts),
 * read with SSCAN a window of buckets at a time, so memory holds only the buckets in hand.
 */
import { BUCKETS, registryOf } from './layout.js';
import type { Link } from './link.js';

/** How many registry buckets are read at once. */
const WINDOW = 16;

/**
 * Every member of the store's registry exactly once (SSCAN may repeat an element; a bucket's
 * members are collected in a Set before any is yielded).
 *
 * @throws ExternalError (determinate) when Redis could not be read.
 */
export async function* registryMembers(
  link: Link, prefix: string, timeoutMs: number, signal: AbortSignal | undefined,
): AsyncGenerator<string, void, undefined> {
  for (let first = 0; first < BUCKETS; first += WINDOW) {
    const buckets = Array.from({ length: Math.min(WINDOW, BUCKETS - first) }, (_, i) => first + i);
    const members = await Promise.all(buckets.map((bucket) => bucketMembers(link, registryOf(prefix, bucket), timeoutMs, signal)));
    for (const bucket of members) yield* bucket;
  }
}

async function bucketMembers(link: Link, registry: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<Set<string>> {
  const members = new Set<string>();
  let cursor = '0';
  do {
    const [nextCursor, page] = await link.run(false, 'listKeys', timeoutMs,
      (client) => client.sscan(registry, cursor, 'COUNT', 1000), signal);
    for (const member of page) members.add(member);
    cursor = nextCursor;
  } while (cursor !== '0');
  return members;
}
