/**
 * Sizes that exercise chunking and streaming: listKeys over 10,000 keys, and (on a real Redis,
 * where the unpack limit exists and the mock would be slow) histories of 100,000 versions.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSResult, SCAN_ALL } from '../lib/index.js';
import type { RedisConsensus } from '../lib/index.js';
import { keyNames } from '../lib/layout.js';
import { backends } from './support/backends.js';

/** Commits `count` versions 0..count-1 to one key, many in flight on one connection. */
async function appendPipelined(consensus: RedisConsensus, key: string, count: number): Promise<void> {
  const payload = Buffer.from('x');
  for (let first = 0; first < count; first += 5000) {
    const batch = [];
    for (let i = first; i < Math.min(first + 5000, count); i++) {
      batch.push(consensus.compareAndSet(key, i === 0 ? null : BigInt(i - 1), { seqno: BigInt(i), data: payload }));
    }
    const results = await Promise.all(batch);
    assert.ok(results.every((result) => result === CaSResult.Committed));
  }
}

for (const backend of await backends()) {
  const test = suite(`scale on ${backend.name}`);

  test('listKeys yields each of 10,000 keys exactly once', async () => {
    const store = await backend.store();
    try {
      const keys = Array.from({ length: 10_000 }, (_, i) => `key-${i}`);
      for (let first = 0; first < keys.length; first += 1000) {
        await Promise.all(keys.slice(first, first + 1000)
          .map((key) => store.consensus.compareAndSet(key, null, { seqno: 0n, data: Buffer.from(key) })));
      }
      const seen = new Map<string, number>();
      for await (const key of store.consensus.listKeys()) seen.set(key, (seen.get(key) ?? 0) + 1);
      assert.is(seen.size, keys.length);
      assert.ok([...seen.values()].every((times) => times === 1), 'a key was yielded twice');
      assert.ok(keys.every((key) => seen.has(key)));
    } finally {
      await store.dispose();
    }
  });

  if (backend.name === 'ioredis-mock') {
    test.run();
    continue;
  }

  test('truncating 100,000 versions in one call works (arguments sent in chunks)', async () => {
    const store = await backend.store();
    try {
      await appendPipelined(store.consensus, 'long', 100_001);
      const scanned = await store.consensus.scan('long', 0n, SCAN_ALL);
      assert.is(scanned.length, 100_001);
      assert.is(scanned[99_999]!.seqno, 99_999n);
      assert.is(await store.consensus.truncate('long', 100_000n), 100_000);
      const left = await store.consensus.scan('long', 0n, SCAN_ALL);
      assert.equal(left.map((version) => version.seqno), [100_000n]);
      assert.is(await store.raw.hlen(keyNames(store.prefix, 'long').data), 1);
    } finally {
      await store.dispose();
    }
  });

  test.after(() => backend.close());
  test.run();
}
