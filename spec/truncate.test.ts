/**
 * truncate's two ways of deleting (lua/truncate-3.lua): when most of a long history goes, the
 * survivors are copied into fresh keys and the old keys are UNLINKed (freed off Redis's main
 * thread); otherwise the doomed versions are deleted in place. Either way the result must be the
 * same: exactly the versions below the seqno gone, the rest byte for byte intact.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSResult, SCAN_ALL } from '../lib/index.js';
import { keyNames } from '../lib/layout.js';
import { backends } from './support/backends.js';
import type { Store } from './support/backends.js';
import { writeHistory } from './support/history.js';

/** Versions 0, 2, 4 ... (gaps between them), each with binary bytes of its own. */
const VERSIONS = 2000;
const seqnoOf = (i: number): bigint => BigInt(2 * i);
const payloadOf = (i: number): Buffer => Buffer.from([i & 0xff, 0x00, 0xff, (i >> 8) & 0xff, 0x80]);

/** Writes the history straight into the layout: fast on both backends. */
async function fill(store: Store, key: string, versions = VERSIONS): Promise<void> {
  await writeHistory(store, key, versions, seqnoOf, payloadOf);
}

async function survivors(store: Store, key: string, from: number, versions = VERSIONS): Promise<void> {
  const names = keyNames(store.prefix, key);
  const expected = Array.from({ length: versions - from }, (_, j) => from + j);
  const left = await store.consensus.scan(key, 0n, SCAN_ALL);
  assert.equal(left.map((version) => version.seqno), expected.map(seqnoOf));
  for (const [j, version] of left.entries()) {
    assert.ok(Buffer.from(version.data).equals(payloadOf(expected[j]!)), `payload of ${version.seqno}`);
  }
  assert.is(await store.raw.zcard(names.versions), expected.length);
  assert.is(await store.raw.hlen(names.data), expected.length);
}

for (const backend of await backends()) {
  const test = suite(`truncate on ${backend.name}`);

  test('deleting all but the last few of 2,000 versions keeps those exactly (copy and unlink)', async () => {
    const store = await backend.store();
    try {
      await fill(store, 'long');
      assert.is(await store.consensus.truncate('long', seqnoOf(VERSIONS - 3)), VERSIONS - 3);
      await survivors(store, 'long', VERSIONS - 3);
      assert.is(await store.consensus.truncate('long', seqnoOf(VERSIONS - 3)), 0, 'idempotent');
      const head = await store.consensus.head('long');
      assert.is(head?.seqno, seqnoOf(VERSIONS - 1));
      const next = { seqno: seqnoOf(VERSIONS), data: Buffer.from('next') };
      assert.is(await store.consensus.compareAndSet('long', head!.seqno, next), CaSResult.Committed);
      const keys = [];
      for await (const key of store.consensus.listKeys()) keys.push(key);
      assert.equal(keys, ['long']);
    } finally {
      await store.dispose();
    }
  });

  test('a seqno between two versions deletes exactly those below it (copy and unlink)', async () => {
    const store = await backend.store();
    try {
      await fill(store, 'gaps');
      // seqnoOf(i) - 1 is odd, so no version has it: versions 0 .. i-1 go.
      const upper = seqnoOf(VERSIONS - 2) - 1n;
      assert.is(await store.consensus.truncate('gaps', upper), VERSIONS - 2);
      await survivors(store, 'gaps', VERSIONS - 2);
    } finally {
      await store.dispose();
    }
  });

  test('deleting the head-most seqno leaves only the head (copy and unlink)', async () => {
    const store = await backend.store();
    try {
      await fill(store, 'all');
      assert.is(await store.consensus.truncate('all', seqnoOf(VERSIONS - 1)), VERSIONS - 1);
      await survivors(store, 'all', VERSIONS - 1);
    } finally {
      await store.dispose();
    }
  });

  test('survivors too many for one batch are all copied (6,000 versions, 1,100 kept)', async () => {
    const store = await backend.store();
    try {
      await fill(store, 'many', 6000);
      assert.is(await store.consensus.truncate('many', seqnoOf(4900)), 4900);
      await survivors(store, 'many', 4900, 6000);
    } finally {
      await store.dispose();
    }
  });

  test('deleting a few versions of 2,000, or half of them, deletes in place', async () => {
    const store = await backend.store();
    try {
      await fill(store, 'few');
      assert.is(await store.consensus.truncate('few', seqnoOf(5) - 1n), 5);
      await survivors(store, 'few', 5);
      assert.is(await store.consensus.truncate('few', seqnoOf(VERSIONS / 2)), VERSIONS / 2 - 5);
      await survivors(store, 'few', VERSIONS / 2);
    } finally {
      await store.dispose();
    }
  });

  test.after(() => backend.close());
  test.run();
}
