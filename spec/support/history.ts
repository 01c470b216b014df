/** Long histories for the specs, written straight into the storage layout (fast on every backend). */
import { keyNames } from '../../lib/layout.js';
import { encodeSeqNo } from '../../lib/seqno.js';
import type { Store } from './backends.js';

/**
 * Writes `count` versions of `key`, the i-th at `seqnoOf(i)` with `payloadOf(i)`, and registers
 * the key; no epoch marker is written, so the first replies come without an envelope.
 */
export async function writeHistory(
  store: Store, key: string, count: number, seqnoOf: (i: number) => bigint, payloadOf: (i: number) => Buffer,
): Promise<void> {
  const names = keyNames(store.prefix, key);
  const members: (string | number)[] = [];
  const fields: (string | Buffer)[] = [];
  for (let i = 0; i < count; i++) {
    members.push(0, encodeSeqNo(seqnoOf(i)));
    fields.push(encodeSeqNo(seqnoOf(i)), payloadOf(i));
  }
  await store.raw.zadd(names.versions, ...members);
  await store.raw.hset(names.data, ...fields);
  await store.raw.sadd(names.registry, names.member);
}
