/**
 * The compare-and-set family (`--only cas`, or its sections `focus`, `operations`, `attribution`,
 * `breakdown`): compareAndSet against SET and the raw-script floor, interleaved in one run; every
 * operation at 1, 16 and 64 in flight; where one sequential call's time goes.
 */
import type { Redis } from 'ioredis';
import { keyNames } from '../../lib/layout.js';
import { Epochs, freshTag } from '../../lib/epoch.js';
import { COMMANDS, defineScripts, isPlainCommit, openEpoch } from '../../lib/scripts.js';
import type { EpochReply } from '../../lib/scripts.js';
import { encodeSeqNo } from '../../lib/seqno.js';
import {
  commandStats, coalescing, deletePrefix, measureGroup, num, populate, ratio, registerKeys, table,
} from '../bench-support.js';
import type { Case } from '../bench-support.js';
import {
  BOUND_LUA, CASES, counters, FLOOR_LUA, HISTORY, IN_FLIGHT, JIT_WARMUP, KEY_COUNTS, LIST_CALLS, MOCK, OPS, PAYLOAD, progress, QUICK, report,
  ROUNDS, RUN_PREFIX, say, SECTIONS, sharedRig, WARMUP,
} from './context.js';
import type { Cell, Operation, Rig } from './context.js';

export async function run(_argv: string[]): Promise<void> {
  const r = await sharedRig();
  const prefix = `${RUN_PREFIX}-cas`;
  const focused = SECTIONS.has('focus') ? await focus(r, prefix) : [];
  report.focus = focused;
  const cells = SECTIONS.has('operations') ? await operationMatrix(r, prefix) : [];
  report.operations = cells;
  if (cells.length > 0) printMatrix(cells);
  report.breakdown = SECTIONS.has('breakdown') ? await breakdown(r, prefix) : [];
  report.attribution = SECTIONS.has('attribution') ? await attribution(r, prefix) : [];
  await deletePrefix(r.raw, prefix);
  if (MOCK) return;
  const out = casTargets(focused.length > 0 ? focused : cells);
  report.casTargets = out;
  if (out.length === 0) return;
  say('## Targets: compare-and-set');
  say();
  say(table(['', 'target', 'measured'], out.map((t) => [t.pass ? 'PASS' : 'MISS', t.target, t.measured])));
  say();
}

async function operationMatrix(r: Rig, prefix: string): Promise<Cell[]> {
  const cells: Cell[] = [];
  const ping = r.client();
  const plain = r.client();
  const pipelined = r.client({ autoPipelining: true });
  const floorSha = MOCK ? '' : String(await plain.script('LOAD', FLOOR_LUA));
  for (const client of [plain, pipelined]) client.defineCommand('benchFloor', { numberOfKeys: 2, lua: FLOOR_LUA });
  await Promise.all([ping.ping(), plain.ping(), pipelined.ping()]);
  const floor = (client: Redis, versions: string, data: string, seqno: string): Promise<unknown> =>
    MOCK
      ? (client as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>).benchFloor!(versions, data, seqno, PAYLOAD)
      : client.evalsha(floorSha, 2, versions, data, seqno, PAYLOAD);

  for (const keys of KEY_COUNTS) {
    const space = `${prefix}-k${keys}`;
    const consensus = await r.consensus(space);
    const lister = await r.consensus(`${space}-list`);
    const names = (kind: string): string[] => Array.from({ length: keys }, (_, k) => `${kind}-${k}`);
    const readKeys = names('read');
    const casKeys = names('cas');
    const truncKeys = names('trunc');
    const setKeys = names('set').map((key) => `${space}:${key}`);
    const floorKeys = names('floor').map((key) => keyNames(`${space}-floor`, key));
    progress(`populating ${keys} key(s) for the matrix`);
    // Calls go round-robin over the keys, warm-up calls too; each truncate deletes one version.
    const truncatable = Math.ceil((IN_FLIGHT.length * (OPS + WARMUP) + JIT_WARMUP) / keys) + IN_FLIGHT.length + 2;
    for (let k = 0; k < keys; k++) {
      await populate(r.raw, space, readKeys[k]!, 0n, HISTORY, PAYLOAD);
      await populate(r.raw, space, truncKeys[k]!, 0n, truncatable, PAYLOAD);
    }
    await registerKeys(r.raw, `${space}-list`, names('listed'));
    const casNext = counters(keys);
    const floorNext = counters(keys);
    const cut = counters(keys);
    let mismatches = 0;
    let truncated = 0;
    let truncateCalls = 0;

    for (const inFlight of IN_FLIGHT) {
      const pick = (i: number): number => i % keys;
      const cases: Array<Case & { name: Cell['name'] }> = [];
      const firstGroup = keys === KEY_COUNTS[0] && inFlight === IN_FLIGHT[0];
      const add = (
        name: Cell['name'], call: (i: number) => Promise<unknown>, calls = OPS, warmup = firstGroup ? JIT_WARMUP : WARMUP,
      ): void => {
        if (CASES.test(name)) cases.push({ name, call, calls, warmup });
      };
      const coalesced = coalescing(plain);
      add('PING', () => ping.ping());
      add('SET', (i) => plain.set(setKeys[pick(i)]!, PAYLOAD));
      add('SET (autopipelined)', (i) => pipelined.set(setKeys[pick(i)]!, PAYLOAD));
      if (!MOCK) add('SET (coalesced)', (i) => coalesced(() => plain.set(setKeys[pick(i)]!, PAYLOAD)));
      const floorCall = (client: Redis, wrap: (call: () => Promise<unknown>) => Promise<unknown>) => (i: number) => {
        const k = pick(i);
        const seqno = floorNext[k]!;
        floorNext[k] = seqno + 1n;
        return wrap(() => floor(client, floorKeys[k]!.versions, floorKeys[k]!.data, encodeSeqNo(seqno)));
      };
      const direct = (call: () => Promise<unknown>): Promise<unknown> => call();
      add('floor EVALSHA', floorCall(plain, direct));
      add('floor EVALSHA (autopipelined)', floorCall(pipelined, direct));
      if (!MOCK) add('floor EVALSHA (coalesced)', floorCall(plain, coalesced));
      add('head', (i) => consensus.head(readKeys[pick(i)]!));
      add('compareAndSet', async (i) => {
        const k = pick(i);
        const seqno = casNext[k]!;
        casNext[k] = seqno + 1n;
        const outcome = await consensus.compareAndSet(casKeys[k]!, seqno === 0n ? null : seqno - 1n,
          { seqno, data: PAYLOAD });
        if (outcome !== 'Committed') mismatches++;
      });
      add('scan', (i) => consensus.scan(readKeys[pick(i)]!, HISTORY - 10, 10));
      add('truncate', async (i) => {
        const k = pick(i);
        const seqno = cut[k]! + 1n;
        cut[k] = seqno;
        const deleted = await consensus.truncate(truncKeys[k]!, seqno);
        truncated += deleted;
        truncateCalls++;
      });
      add('listKeys', async () => {
        let listed = 0;
        for await (const key of lister.listKeys()) listed += key.length > 0 ? 1 : 0;
        if (listed !== keys) throw new Error(`listKeys yielded ${listed} keys, expected ${keys}`);
      }, Math.max(LIST_CALLS, inFlight), Math.min(WARMUP, inFlight));
      const results = await measureGroup(inFlight, cases, ROUNDS, undefined, (round) =>
        progress(`operations over ${keys} key(s), ${inFlight} in flight: round ${round + 1}/${ROUNDS}`));
      for (const c of cases) cells.push({ name: c.name, inFlight, keys, ...results.get(c.name)! });
    }
    // Sanity: the pipelined compare-and-sets were issued in order on one connection, so each one's
    // expectation was the previous one's seqno and every call must have committed.
    if (mismatches > 0) say(`!! ${mismatches} compareAndSet calls over ${keys} key(s) did not commit`);
    if (truncated !== truncateCalls) say(`!! truncate deleted ${truncated} versions in ${truncateCalls} calls (expected 1 each)`);
    await consensus.close();
    await lister.close();
    progress(`cleaning up ${keys} key(s)`);
    await deletePrefix(r.raw, space);
    await deletePrefix(r.raw, `${space}-list`);
    await deletePrefix(r.raw, `${space}-floor`);
  }
  await Promise.all([ping.quit(), plain.quit(), pipelined.quit()]);
  return cells;
}

/** The operations this family measures (the lease operations are scripts/bench/lease.ts's). */
const BASELINE_OF: Partial<Record<Operation, 'SET'>> = {
  head: 'SET', compareAndSet: 'SET', scan: 'SET', truncate: 'SET', listKeys: 'SET', append: 'SET',
};

function find(cells: readonly Cell[], name: Cell['name'], inFlight: number, keys: number): Cell | undefined {
  return cells.find((cell) => cell.name === name && cell.inFlight === inFlight && cell.keys === keys);
}

/** The faster (by throughput) of a baseline's plain and autopipelined runs. */
function best(cells: readonly Cell[], name: 'SET' | 'floor EVALSHA', inFlight: number, keys: number): Cell | undefined {
  const a = find(cells, name, inFlight, keys);
  const b = find(cells, `${name} (autopipelined)`, inFlight, keys);
  if (a === undefined || b === undefined) return a ?? b;
  return b.opsPerSec > a.opsPerSec ? b : a;
}

function printMatrix(cells: readonly Cell[]): void {
  say('## Operations: one RedisConsensus (one connection), 1 KiB payloads');
  say('Ratios: throughput and p50 against the best SET of the same payload at the same in-flight');
  say('count and key count (xSET); compareAndSet also against the raw-script floor (xfloor).');
  say('head/scan read keys of 100 versions; scan returns the last 10; truncate deletes 1 version');
  say('per call; listKeys walks all 1,024 registry buckets of a store holding that many keys.');
  say();
  const rows: string[][] = [];
  for (const keys of KEY_COUNTS) {
    for (const inFlight of IN_FLIGHT) {
      const set = best(cells, 'SET', inFlight, keys);
      const floor = best(cells, 'floor EVALSHA', inFlight, keys);
      for (const cell of cells.filter((c) => c.keys === keys && c.inFlight === inFlight)) {
        const isOp = cell.name in BASELINE_OF;
        const vsSet = cell.name !== 'PING' && !cell.name.startsWith('SET') && cell.name !== 'listKeys';
        rows.push([
          cell.name, String(keys), String(inFlight), num(cell.opsPerSec), num(cell.p50us), num(cell.p99us),
          num(cell.cpuUsPerOp, 1),
          vsSet ? ratio(cell.opsPerSec, set?.opsPerSec ?? NaN) : '',
          vsSet ? ratio(cell.p50us, set?.p50us ?? NaN) : '',
          cell.name === 'compareAndSet' ? ratio(cell.opsPerSec, floor?.opsPerSec ?? NaN) : '',
          isOp || cell.name.startsWith('floor') ? '' : '(baseline)',
        ]);
      }
    }
  }
  say(table(['operation', 'keys', 'in flight', 'ops/s', 'p50 us', 'p99 us', 'cpu us/op', 'ops xSET',
    'p50 xSET', 'ops xfloor', ''], rows));
  say();
}

/**
 * The cells the compare-and-set targets are judged on, measured on their own: compareAndSet, SET
 * and the floor only, interleaved in more rounds, so that no other operation's garbage or JIT
 * work lands in their slices. Server time per call comes from INFO commandstats, per slice.
 */
async function focus(r: Rig, prefix: string): Promise<Cell[]> {
  if (MOCK) return [];
  const space = `${prefix}-focus`;
  const keys = 64;
  const consensus = await r.consensus(space);
  const plain = r.client();
  const pipelined = r.client({ autoPipelining: true });
  const floorSha = String(await plain.script('LOAD', FLOOR_LUA));
  await Promise.all([plain.ping(), pipelined.ping()]);
  const setKeys = Array.from({ length: keys }, (_, k) => `${space}:set-${k}`);
  const floorKeys = Array.from({ length: keys }, (_, k) => keyNames(`${space}-floor`, `floor-${k}`));
  const casNext = counters(keys);
  const floorNext = counters(keys);
  let mismatches = 0;
  const cells: Cell[] = [];
  for (const inFlight of [1, 64]) {
    const floorCall = (client: Redis) => (i: number): Promise<unknown> => {
      const k = i % keys;
      const seqno = floorNext[k]!;
      floorNext[k] = seqno + 1n;
      return client.evalsha(floorSha, 2, floorKeys[k]!.versions, floorKeys[k]!.data, encodeSeqNo(seqno), PAYLOAD);
    };
    const calls = QUICK ? 4000 : 40000;
    const warmup = inFlight === 1 ? JIT_WARMUP : WARMUP;
    const cases: Array<Case & { name: Cell['name'] }> = [
      { name: 'SET', serverCommand: 'set', calls, warmup, call: (i) => plain.set(setKeys[i % keys]!, PAYLOAD) },
      { name: 'SET (autopipelined)', serverCommand: 'set', calls, warmup, call: (i) => pipelined.set(setKeys[i % keys]!, PAYLOAD) },
      { name: 'floor EVALSHA', serverCommand: 'evalsha', calls, warmup, call: floorCall(plain) },
      { name: 'floor EVALSHA (autopipelined)', serverCommand: 'evalsha', calls, warmup, call: floorCall(pipelined) },
      {
        name: 'compareAndSet', serverCommand: 'evalsha', calls, warmup, call: async (i) => {
          const k = i % keys;
          const seqno = casNext[k]!;
          casNext[k] = seqno + 1n;
          const outcome = await consensus.compareAndSet(`cas-${k}`, seqno === 0n ? null : seqno - 1n, { seqno, data: PAYLOAD });
          if (outcome !== 'Committed') mismatches++;
        },
      },
    ];
    const results = await measureGroup(inFlight, cases, ROUNDS * 2, (command) => commandStats(r.raw, command),
      (round) => progress(`compareAndSet vs SET vs floor, ${inFlight} in flight over ${keys} keys: round ${round + 1}/${ROUNDS * 2}`));
    for (const c of cases) cells.push({ name: c.name, inFlight, keys, ...results.get(c.name)! });
  }
  if (mismatches > 0) say(`!! ${mismatches} compareAndSet calls did not commit`);
  await consensus.close();
  await Promise.all([plain.quit(), pipelined.quit()]);
  await deletePrefix(r.raw, space);
  await deletePrefix(r.raw, `${space}-floor`);
  say('## compareAndSet against SET and the floor, measured on their own (64 keys, 1 KiB)');
  say('The compareAndSet targets are judged on these figures. cpu: this process per call; server:');
  say('time inside Redis per call (INFO commandstats); both are steadier than ops/s on a shared machine.');
  say();
  const rows = cells.map((cell) => {
    const set = best(cells, 'SET', cell.inFlight, keys);
    const floor = best(cells, 'floor EVALSHA', cell.inFlight, keys);
    return [
      cell.name, String(cell.inFlight), num(cell.opsPerSec), num(cell.p50us), num(cell.p99us), num(cell.cpuUsPerOp, 1),
      num(cell.serverUsPerOp ?? NaN, 1), num(cell.cpuUsPerOp + (cell.serverUsPerOp ?? NaN), 1),
      cell.name.startsWith('SET') ? '' : ratio(cell.opsPerSec, set?.opsPerSec ?? NaN),
      cell.name === 'compareAndSet' ? ratio(cell.opsPerSec, floor?.opsPerSec ?? NaN) : '',
    ];
  });
  say(table(['call', 'in flight', 'ops/s', 'p50 us', 'p99 us', 'cpu us', 'server us', 'cpu+server',
    'ops xSET', 'ops xfloor'], rows));
  say();
  return cells;
}

/** Where one sequential call's time goes: client p50 and server time (INFO commandstats). */
async function breakdown(r: Rig, prefix: string): Promise<Record<string, unknown>[]> {
  if (MOCK) return [];
  const space = `${prefix}-why`;
  const consensus = await r.consensus(space);
  const client = r.client();
  const floorSha = String(await client.script('LOAD', FLOOR_LUA));
  const emptySha = String(await client.script('LOAD', 'return 1'));
  // The library's own scripts, called as the commands defineCommand makes, with no wrapper.
  defineScripts(client);
  const scripts = client as unknown as Record<string, (...args: (string | Buffer)[]) => Promise<unknown>>;
  const casScript = scriptCaller(client, space);
  const headScript = (...args: (string | Buffer)[]): Promise<unknown> => scripts[COMMANDS.head.buffer]!(...args);
  const n = QUICK ? 3000 : 20000;
  await populate(r.raw, space, 'read', 0n, HISTORY, PAYLOAD);
  const read = keyNames(space, 'read');
  const rows: Record<string, unknown>[] = [];
  const next: Record<string, bigint> = {};
  const step = (key: string): bigint => {
    const seqno = next[key] ?? 0n;
    next[key] = seqno + 1n;
    return seqno;
  };
  const cases: Array<[string, string, (i: number) => Promise<unknown>]> = [
    ['PING', 'ping', () => client.ping()],
    ['SET 1 KiB', 'set', () => client.set(`${space}:set`, PAYLOAD)],
    ['EVALSHA of an empty script (return 1)', 'evalsha', () => client.evalsha(emptySha, 0)],
    ['floor EVALSHA (ZRANGE+ZADD+HSET)', 'evalsha', () => {
      const names = keyNames(space, 'floor');
      return client.evalsha(floorSha, 2, names.versions, names.data, encodeSeqNo(step('floor')), PAYLOAD);
    }],
    ['compareAndSet script (EVALSHA), no library', 'evalsha', () => {
      const seqno = step('script');
      return casScript('P-cl', 'script', seqno);
    }],
    ['consensus.compareAndSet', 'evalsha', () => {
      const seqno = step('library');
      return consensus.compareAndSet('library', seqno === 0n ? null : seqno - 1n, { seqno, data: PAYLOAD });
    }],
    ['head script (EVALSHA), no library', 'evalsha', () => headScript(read.versions, read.data, read.epoch, '')],
    ['consensus.head', 'evalsha', () => consensus.head('read')],
  ];
  const results = await measureGroup(1, cases.map(([name, serverCommand, call]) => ({
    name, serverCommand, call, calls: n, warmup: WARMUP,
  })), ROUNDS, (command) => commandStats(r.raw, command), (round) => progress(`breakdown: round ${round + 1}/${ROUNDS}`));
  for (const [name] of cases) {
    const stats = results.get(name)!;
    rows.push({
      name, p50us: stats.p50us, opsPerSec: stats.opsPerSec, serverUsPerCall: stats.serverUsPerOp,
      clientCpuUsPerCall: stats.cpuUsPerOp,
    });
  }
  await consensus.close();
  await client.quit();
  await deletePrefix(r.raw, space);
  say('## Where a sequential call spends its time (1 key, 1 in flight)');
  say('server us: INFO commandstats usec per call (time inside Redis); client cpu: this process.');
  say();
  say(table(['call', 'p50 us', 'ops/s', 'server us', 'client cpu us'], rows.map((row) => [
    String(row.name), num(row.p50us as number), num(row.opsPerSec as number),
    num(row.serverUsPerCall as number, 1), num(row.clientCpuUsPerCall as number, 1),
  ])));
  say();
  return rows;
}

/**
 * A caller of `compareAndSet-4.lua` itself, with no library around it: the script's flags (its
 * header: announce, withHead, carry, legacy) as given, the bucket's epoch marker known and counted
 * as the library does, each key's next seqno expected on top of the one before.
 */
function scriptCaller(client: Redis, space: string): (flags: string, key: string, seqno: bigint) => Promise<unknown> {
  defineScripts(client);
  const scripts = client as unknown as Record<string, (...args: (string | Buffer)[]) => Promise<unknown>>;
  const epochs = new Epochs();
  return async (flags, key, seqno) => {
    const names = keyNames(space, key);
    const sent = epochs.known(names.bucket);
    const head = epochs.nextHead(names.bucket, sent, freshTag());
    const wire = await scripts[COMMANDS.compareAndSet.buffer]!(names.versions, names.data, names.registry, names.epoch,
      flags + encodeSeqNo(seqno) + (seqno === 0n ? '' : encodeSeqNo(seqno - 1n)), PAYLOAD, sent, head) as EpochReply<number>;
    const reply = openEpoch(wire, epochs, names, sent, 'compareAndSet');
    if (isPlainCommit(wire)) epochs.committed(names.bucket, sent, head);
    if (reply !== 1) throw new Error(`the compareAndSet script did not commit ${key} at ${seqno}: ${String(reply)}`);
    return reply;
  };
}

/** Each level of issue 19's attribution: what the script does on top of the one before. */
const LEVELS: ReadonlyArray<{ name: string; flags?: string; bound?: true }> = [
  { name: 'floor script (ZRANGE+ZADD+HSET)' },
  { name: 'bound: floor + GET, SET marker + 1 PUBLISH, no logic', bound: true },
  { name: '+ epoch and rollback check, count (no announcement)', flags: '----' },
  { name: '+ carried announcement (1 PUBLISH)', flags: 'P-c-' },
  { name: '+ plain twin (legacyAnnouncements, default: 2 PUBLISH)', flags: 'P-cl' },
];

/**
 * Issue 19's attribution: time inside Redis per call (INFO commandstats) of the floor script and
 * of compareAndSet-4.lua with each feature added, at 64 in flight over 64 keys, interleaved. On a
 * saturated Redis, floor / level bounds the 64-in-flight ratio whatever the client does.
 */
async function attribution(r: Rig, prefix: string): Promise<Array<{ name: string; serverUs: number; opsPerSec: number }>> {
  if (MOCK) return [];
  const space = `${prefix}-levels`;
  const keys = 64;
  const client = r.client();
  const floorSha = String(await client.script('LOAD', FLOOR_LUA));
  const boundSha = String(await client.script('LOAD', BOUND_LUA));
  // A marker as long as compareAndSet's (an id, a count and RING = 32 tags of 8 bytes).
  const marker = `first:${'0'.repeat(16)}|100000|${'t'.repeat(8 * 32)}`;
  const cas = scriptCaller(client, space);
  const next = LEVELS.map(() => counters(keys));
  const calls = QUICK ? 4000 : 40000;
  const cases: Case[] = LEVELS.map((level, l) => ({
    name: level.name, serverCommand: 'evalsha', calls, warmup: WARMUP, call: (i: number): Promise<unknown> => {
      const k = i % keys;
      const seqno = next[l]![k]!;
      next[l]![k] = seqno + 1n;
      if (level.bound) {
        const names = keyNames(`${space}-bound`, `bound-${k}`);
        return client.evalsha(boundSha, 3, names.versions, names.data, names.epoch, encodeSeqNo(seqno), PAYLOAD, marker, names.heads);
      }
      if (level.flags === undefined) {
        const names = keyNames(space, `floor-${k}`);
        return client.evalsha(floorSha, 2, names.versions, names.data, encodeSeqNo(seqno), PAYLOAD);
      }
      return cas(level.flags, `level-${l}-${k}`, seqno);
    },
  }));
  const results = await measureGroup(64, cases, ROUNDS * 2, (command) => commandStats(r.raw, command),
    (round) => progress(`attribution: round ${round + 1}/${ROUNDS * 2}`));
  await client.quit();
  await deletePrefix(r.raw, space);
  const rows = LEVELS.map((level) => ({
    name: level.name, serverUs: results.get(level.name)!.serverUsPerOp ?? NaN, opsPerSec: results.get(level.name)!.opsPerSec,
  }));
  const floor = rows[0]!.serverUs;
  say('## Issue 19 attribution: time inside Redis per call, feature by feature (64 in flight, 64 keys, 1 KiB)');
  say('Each level is compareAndSet-4.lua (or the floor script) called directly, interleaved; server us is INFO');
  say('commandstats usec_per_call. floor/level bounds the 64-in-flight ratio when Redis is the bottleneck.');
  say();
  say(table(['script', 'server us', 'floor/level', 'ops/s'], rows.map((row) => [
    row.name, num(row.serverUs, 1), ratio(floor, row.serverUs), num(row.opsPerSec),
  ])));
  say();
  return rows;
}

/** The lower-latency (by p50) of a baseline's plain and autopipelined runs. */
function quickest(cells: readonly Cell[], name: 'SET' | 'floor EVALSHA', inFlight: number, keys: number): Cell | undefined {
  return [find(cells, name, inFlight, keys), find(cells, `${name} (autopipelined)`, inFlight, keys)]
    .filter((c): c is Cell => c !== undefined).sort((a, b) => a.p50us - b.p50us)[0];
}

type Target = { target: string; measured: string; pass: boolean };

/** compareAndSet's sequential p50 at most `times` a baseline's. */
function latencyTarget(label: string, cas: Cell, baseline: Cell, times: number): Target {
  return {
    target: `${label} <= ${times}x ${baseline.name.startsWith('SET') ? 'sequential SET p50' : 'raw-script floor p50'}`,
    measured: `${num(cas.p50us)} us vs ${num(baseline.p50us)} us = ${ratio(cas.p50us, baseline.p50us)}`,
    pass: cas.p50us <= times * baseline.p50us,
  };
}

/** compareAndSet's ops/s at least `times` a baseline's. */
function throughputTarget(label: string, cas: Cell, baseline: Cell, times: number, what: string): Target {
  return {
    target: `${label} >= ${times}x ${what}`,
    measured: `${num(cas.opsPerSec)} vs ${num(baseline.opsPerSec)} (${baseline.name}) = ${ratio(cas.opsPerSec, baseline.opsPerSec)}`,
    pass: cas.opsPerSec >= times * baseline.opsPerSec,
  };
}

/** The compare-and-set targets, judged on the focused measurement when there is one. */
function casTargets(cells: readonly Cell[]): Target[] {
  const out: Target[] = [];
  for (const keys of [...new Set(cells.map((cell) => cell.keys))]) {
    const cas = find(cells, 'compareAndSet', 1, keys);
    const set = quickest(cells, 'SET', 1, keys);
    const floor = quickest(cells, 'floor EVALSHA', 1, keys);
    if (cas && set) {
      const row = latencyTarget('sequential compareAndSet p50', cas, set, 1.3);
      row.target += ` (${keys} key${keys > 1 ? 's' : ''})`;
      if (floor) row.measured += ` (raw floor script: ${ratio(floor.p50us, set.p50us)})`;
      out.push(row);
    }
  }
  // Issue 19's cost budget: with the epoch, rollback detection and announcements all on (the
  // defaults), against the raw floor script in the same run on the same server.
  const sequential = find(cells, 'compareAndSet', 1, 64);
  const floorSequential = quickest(cells, 'floor EVALSHA', 1, 64);
  const cas = find(cells, 'compareAndSet', 64, 64);
  const floor = best(cells, 'floor EVALSHA', 64, 64);
  const set = best(cells, 'SET', 64, 64);
  const atFlight = 'compareAndSet ops/s at 64 in flight over 64 keys';
  if (cas && floor) out.push(throughputTarget(`issue 19: ${atFlight}`, cas, floor, 0.85, 'raw-script floor'));
  if (sequential && floorSequential) {
    const row = latencyTarget('issue 19: sequential compareAndSet p50', sequential, floorSequential, 1.2);
    row.target += ' (64 keys)';
    out.push(row);
  }
  if (cas && floor) out.push(throughputTarget(atFlight, cas, floor, 0.9, 'raw-script floor'));
  if (cas && set) out.push(throughputTarget(atFlight, cas, set, 0.5, 'best SET'));
  return out;
}
