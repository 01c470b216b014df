/**
 * Long histories in bounded steps (lib/history.ts, scan-3.lua, truncate-3.lua), with the step
 * bounds made small so that a few dozen versions take many steps: each scan step is bounded in
 * versions and payload bytes; a scan of many steps is one snapshot (commits made meanwhile are not
 * in it); a truncate between two steps that removes versions not read yet makes an array scan
 * start over and a streamed scan fail with `scan-truncated`; a truncate runs in steps, and one
 * that fails part-way is indeterminate and finished by calling it again. On ioredis-mock and a
 * real Redis.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSResult, ExternalError, SCAN_ALL } from '../lib/index.js';
import type { VersionedData } from '../lib/index.js';
import type { RedisClient } from '../lib/client.js';
import { STEP_LIMITS } from '../lib/history.js';
import { keyNames } from '../lib/layout.js';
import type { Link } from '../lib/link.js';
import { callScript, COMMANDS, defineScripts, SCAN_TRUNCATED } from '../lib/scripts.js';
import type { ScanReply } from '../lib/scripts.js';
import { encodeSeqNo } from '../lib/seqno.js';
import { backends, rejection } from './support/backends.js';
import type { Backend, Store } from './support/backends.js';
import { writeHistory } from './support/history.js';

const VERSIONS = 40;
/** Versions 0, 3, 6 ... (gaps between them), each payload 100 bytes of its own. */
const seqnoOf = (i: number): bigint => BigInt(3 * i);
const payloadOf = (i: number): Buffer => Buffer.alloc(100, i);

/** Writes the history straight into the layout (no epoch marker: replies come without envelope). */
async function fill(store: Store, key: string, versions = VERSIONS): Promise<void> {
  await writeHistory(store, key, versions, seqnoOf, payloadOf);
}

const seqnos = (versions: readonly VersionedData[]): bigint[] => versions.map((version) => version.seqno);
const indexes = (first: number, last: number): number[] => Array.from({ length: last - first + 1 }, (_, j) => first + j);

function assertVersions(versions: readonly VersionedData[], expected: number[]): void {
  assert.equal(seqnos(versions), expected.map(seqnoOf));
  for (const [j, version] of versions.entries()) {
    assert.ok(Buffer.from(version.data).equals(payloadOf(expected[j]!)), `payload of ${version.seqno}`);
  }
}

/** Runs `body` with small step bounds, restoring them after. */
async function withSteps<T>(limits: Partial<typeof STEP_LIMITS>, body: () => Promise<T>): Promise<T> {
  const saved = { ...STEP_LIMITS };
  Object.assign(STEP_LIMITS, limits);
  try {
    return await body();
  } finally {
    Object.assign(STEP_LIMITS, saved);
  }
}

type ScriptKind = 'scan' | 'truncate';

/**
 * Calls `before(kind, n)` before the n-th (from 1) call of each script a store sends (its
 * read-only form included); `before` may do anything first, or throw to fail that call unsent.
 */
function interceptSteps(store: Store, before: (kind: ScriptKind, n: number) => Promise<void>): void {
  const link = (store.consensus as unknown as { link: Link }).link;
  const counts: Record<ScriptKind, number> = { scan: 0, truncate: 0 };
  const wrap = (client: RedisClient, method: string, kindOf: (args: unknown[]) => ScriptKind | undefined): void => {
    const methods = client as unknown as Record<string, ((...args: unknown[]) => Promise<unknown>) | undefined>;
    const original = methods[method];
    if (original === undefined || Object.prototype.hasOwnProperty.call(methods, `__wrapped_${method}`)) return;
    Object.defineProperty(methods, `__wrapped_${method}`, { value: true });
    methods[method] = async function (this: unknown, ...args: unknown[]) {
      const kind = kindOf(args);
      if (kind !== undefined) await before(kind, ++counts[kind]);
      return original.apply(this, args);
    };
  };
  for (const client of new Set([link.reader, link.writer])) {
    for (const kind of ['scan', 'truncate'] as const) {
      wrap(client, COMMANDS[kind].name, () => kind);
      wrap(client, COMMANDS[kind].buffer, () => kind);
    }
    // EVAL_RO / EVALSHA_RO: the scan's nine KEYS and ARGV after the script and the key count.
    wrap(client, 'callBuffer', (args) => (String(args[0]).endsWith('_RO') && args.length === 12 ? 'scan' : undefined));
  }
}

function historySuite(backend: Backend): void {
  const test = suite(`history in bounded steps on ${backend.name}`);

  test('one scan step returns at most `limit` versions and `maxBytes` of payloads, and at least one', async () => {
    const store = await backend.store();
    try {
      await fill(store, 'k');
      const names = keyNames(store.prefix, 'k');
      defineScripts(store.raw);
      const step = (from: number, to: string, after: string, limit: number, maxBytes: number): Promise<ScanReply> =>
        callScript<ScanReply>(store.raw, 'scan', [names.versions, names.data, names.epoch, encodeSeqNo(seqnoOf(from)), to,
          after, String(limit), String(maxBytes), '']);
      const count = (reply: ScanReply): number => (Array.isArray(reply) && reply.length > 0 ? reply[0]!.length : -1);
      assert.is(count(await step(0, '', '', 5, 1_000_000)), 5);
      assert.is(count(await step(0, '', '', 5, 250)), 2, '100-byte payloads, 250 bytes');
      assert.is(count(await step(0, '', '', 5, 10)), 1, 'one version however large');
      assert.is(count(await step(2, encodeSeqNo(seqnoOf(4)), '', 100, 1_000_000)), 3, 'up to `to` only');
      const reply = await step(2, '', '', 3, 1_000_000);
      assert.ok(Array.isArray(reply) && reply.length >= 3);
      assert.is(String(reply[1]), encodeSeqNo(seqnoOf(VERSIONS - 1)), 'the head comes with a step');
      assert.is(count(await step(5, '', encodeSeqNo(seqnoOf(4)), 5, 1_000_000)), 5, 'the last seqno read is still stored');
      await store.raw.zrem(names.versions, encodeSeqNo(seqnoOf(4)));
      assert.is(await step(5, '', encodeSeqNo(seqnoOf(4)), 5, 1_000_000), SCAN_TRUNCATED, 'the last seqno read is gone');
      assert.equal(await step(VERSIONS, '', '', 5, 1_000_000), [], 'nothing at or above from');
    } finally {
      await store.dispose();
    }
  });

  test('a scan of many steps returns what one step would', async () => {
    const store = await backend.store();
    try {
      await fill(store, 'k');
      const wide = await store.consensus.scan('k', 0n, SCAN_ALL);
      assertVersions(wide, indexes(0, VERSIONS - 1));
      await withSteps({ scanVersions: 3, scanBytes: 250 }, async () => {
        assertVersions(await store.consensus.scan('k', 0n, SCAN_ALL), indexes(0, VERSIONS - 1));
        assertVersions(await store.consensus.scan('k', 4n, 7), indexes(2, 8));
        assertVersions(await store.consensus.scan('k', seqnoOf(VERSIONS - 2), 100n), indexes(VERSIONS - 2, VERSIONS - 1));
        assert.equal(await store.consensus.scan('k', seqnoOf(VERSIONS), SCAN_ALL), []);
        assert.equal(await store.consensus.scan('missing', 0n, SCAN_ALL), []);
        const streamed: VersionedData[] = [];
        for await (const version of store.consensus.scanStream('k', 5n)) streamed.push(version);
        assertVersions(streamed, indexes(2, VERSIONS - 1));
      });
    } finally {
      await store.dispose();
    }
  });

  test('a scan of many steps is one snapshot: commits made meanwhile are not in it', async () => {
    const store = await backend.store();
    try {
      await fill(store, 'k');
      const head = seqnoOf(VERSIONS - 1);
      interceptSteps(store, async (kind, n) => {
        if (kind === 'scan' && n === 2) {
          assert.is(await store.consensus.compareAndSet('k', head, { seqno: head + 1n, data: Buffer.from('new') }), CaSResult.Committed);
        }
      });
      await withSteps({ scanVersions: 10 }, async () => {
        assertVersions(await store.consensus.scan('k', 0n, SCAN_ALL), indexes(0, VERSIONS - 1));
      });
      assert.is((await store.consensus.head('k'))?.seqno, head + 1n);
    } finally {
      await store.dispose();
    }
  });

  test('a truncate between steps: of versions read, the snapshot stands; of versions not read, the scan starts over', async () => {
    const store = await backend.store();
    try {
      await fill(store, 'k');
      let truncateTo = 0n;
      let scans = 0;
      let atScan = 0;
      interceptSteps(store, async (kind, n) => {
        if (kind === 'scan') scans = n;
        if (kind === 'scan' && n === atScan) await store.consensus.truncate('k', truncateTo);
      });
      await withSteps({ scanVersions: 10 }, async () => {
        // The first step reads indexes 0-9; removing 0-4 before the second leaves what is still to read.
        [truncateTo, atScan] = [seqnoOf(5), scans + 2];
        assertVersions(await store.consensus.scan('k', 0n, SCAN_ALL), indexes(0, VERSIONS - 1));
        // The first step reads 5-14; removing up to 14, the last one read, makes the scan start over.
        [truncateTo, atScan] = [seqnoOf(15), scans + 2];
        assertVersions(await store.consensus.scan('k', 0n, SCAN_ALL), indexes(15, VERSIONS - 1));
      });
    } finally {
      await store.dispose();
    }
  });

  test('a streamed scan fails with scan-truncated when versions it has not handed out are truncated', async () => {
    const store = await backend.store();
    try {
      await fill(store, 'k');
      await withSteps({ scanVersions: 10 }, async () => {
        const seen: VersionedData[] = [];
        const err = await rejection((async () => {
          for await (const version of store.consensus.scanStream('k', 0n)) {
            seen.push(version);
            if (seen.length === 10) await store.consensus.truncate('k', seqnoOf(20));
          }
        })());
        assert.instance(err, ExternalError);
        assert.is((err as ExternalError).code, 'scan-truncated');
        assert.is((err as ExternalError).determinate, true);
        assertVersions(seen, indexes(0, 9));
        // Truncating only what was handed out does not disturb it.
        const rest: VersionedData[] = [];
        for await (const version of store.consensus.scanStream('k', 0n)) {
          rest.push(version);
          if (rest.length === 10) await store.consensus.truncate('k', seqnoOf(25));
        }
        assertVersions(rest, indexes(20, VERSIONS - 1));
      });
    } finally {
      await store.dispose();
    }
  });

  test('truncate deletes in steps, and one interrupted part-way is finished by calling it again', async () => {
    const store = await backend.store();
    try {
      await fill(store, 'k');
      const names = keyNames(store.prefix, 'k');
      let failAt = 0;
      let calls = 0;
      interceptSteps(store, async (kind, n) => {
        if (kind !== 'truncate') return;
        calls++;
        if (n === failAt) throw new Error('injected: the connection broke before this step was sent');
      });
      await withSteps({ truncateVersions: 7 }, async () => {
        assert.is(await store.consensus.truncate('k', seqnoOf(10)), 10);
        assert.is(calls, 2, '7 then 3');
        assert.is(await store.raw.zcard(names.versions), VERSIONS - 10);
        failAt = calls + 3;
        const err = await rejection(store.consensus.truncate('k', seqnoOf(35)));
        assert.instance(err, ExternalError);
        assert.is((err as ExternalError).determinate, false, 'earlier steps deleted versions');
        assert.match((err as ExternalError).message, /deleted 14 versions/);
        assert.is(await store.raw.zcard(names.versions), VERSIONS - 24);
        assert.is(await store.consensus.truncate('k', seqnoOf(35)), 11, 'the rest');
        assertVersions(await store.consensus.scan('k', 0n, SCAN_ALL), indexes(35, VERSIONS - 1));
        assert.is(await store.raw.hlen(names.data), VERSIONS - 35);
        assert.is(await store.consensus.truncate('k', seqnoOf(35)), 0, 'idempotent');
        // A first step that fails leaves the error as it was: determinate, nothing deleted.
        failAt = calls + 1;
        const first = await rejection(store.consensus.truncate('k', seqnoOf(38)));
        assert.instance(first, ExternalError);
        assert.is(await store.raw.zcard(names.versions), VERSIONS - 35);
        const above = await rejection(store.consensus.truncate('k', seqnoOf(VERSIONS)));
        assert.is((above as ExternalError).code, 'truncate-above-head');
        assert.is((above as ExternalError).determinate, true);
      });
    } finally {
      await store.dispose();
    }
  });

  test.after(() => backend.close());
  test.run();
}

for (const backend of await backends()) historySuite(backend);
