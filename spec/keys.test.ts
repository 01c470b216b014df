/** Hostile keys: isolated from each other and from other prefixes, and listed exactly. */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSResult } from '../lib/index.js';
import { BUCKETS, bucketOf, keyNames, keyOfMember } from '../lib/layout.js';
import { backends } from './support/backends.js';
import { AWKWARD_KEYS } from './support/contract.js';

// Every await before the first suite runs: run alone (`node build/spec/<file>.js`), uvu starts at the
// first pause after a suite's run() and re-runs the queued suites for each later one.
const allBackends = await backends();

const layout = suite('key layout');

layout('key names are distinct for distinct keys and read back from the registry member', () => {
  const keys = [...AWKWARD_KEYS, 'x'.repeat(65536), '\uD800\uDC00', '\uDC00\uD800', '\\uD800'];
  const names = new Set<string>();
  for (const key of keys) {
    const { versions, data, member } = keyNames('p', key);
    names.add(versions);
    names.add(data);
    assert.is(keyOfMember(member), key);
    assert.is(keyOfMember(Buffer.from(member, 'utf8')), key);
  }
  assert.is(names.size, keys.length * 2);
});

layout('every Redis key of a consensus key carries the same hash tag, first in the name', () => {
  for (const key of AWKWARD_KEYS) {
    const { versions, data, registry } = keyNames('app', key);
    const tag = `{${bucketOf(key)}}`;
    for (const name of [versions, data, registry]) {
      assert.is(name.indexOf('{'), 'app:'.length, name);
      assert.ok(name.startsWith(`app:${tag}:`), name);
    }
  }
});

layout('buckets spread 10,000 keys evenly', () => {
  const counts = new Array<number>(BUCKETS).fill(0);
  for (let i = 0; i < 10_000; i++) counts[bucketOf(`tenant-${i}/shard`)]!++;
  const used = counts.filter((count) => count > 0).length;
  assert.ok(used > BUCKETS * 0.99, `only ${used} buckets used`);
  assert.ok(Math.max(...counts) < 30, `a bucket holds ${Math.max(...counts)} keys`);
});

layout.run();

const KEYS_THAT_BITE = ['*', '?*', '\0', 'a\0', 'x'.repeat(64 * 1024), 'é'.repeat(1000), '{0}', '}{', ':keys'];

for (const backend of allBackends) {
  const test = suite(`hostile keys on ${backend.name}`);

  test('keys with *, NUL, 64 KiB of text, braces, or equal to the prefix stay apart and list exactly', async () => {
    const store = await backend.store();
    const neighbour = await backend.store({ prefix: `${store.prefix}:sub` });
    try {
      const keys = [...KEYS_THAT_BITE, store.prefix, `${store.prefix}:`, neighbour.prefix];
      for (const [i, key] of keys.entries()) {
        assert.is(await store.consensus.compareAndSet(key, null, { seqno: BigInt(i), data: Buffer.from(`#${i}`) }), CaSResult.Committed);
      }
      await neighbour.consensus.compareAndSet('*', null, { seqno: 99n, data: Buffer.from('neighbour') });
      for (const [i, key] of keys.entries()) {
        const head = await store.consensus.head(key);
        assert.is(head?.seqno, BigInt(i));
        assert.is(Buffer.from(head!.data).toString(), `#${i}`);
      }
      const listed: string[] = [];
      for await (const key of store.consensus.listKeys()) listed.push(key);
      assert.equal(listed.sort(), [...keys].sort());
      const neighbourKeys: string[] = [];
      for await (const key of neighbour.consensus.listKeys()) neighbourKeys.push(key);
      assert.equal(neighbourKeys, ['*']);
      assert.is((await neighbour.consensus.head('*'))?.seqno, 99n);
    } finally {
      await neighbour.dispose();
      await store.dispose();
    }
  });

  test.after(() => backend.close());
  test.run();
}
