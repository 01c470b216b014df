/**
 * `npm run bench`: throughput and latency of every operation, against baselines measured in the
 * same run, plus scale (big histories, big truncates, many keys) and memory per version.
 *
 *   npm run bench                      # a redis-server of its own (ports 7400-7449), or REDIS_URL
 *   npm run bench -- --quick           # a short run (< 60 s)
 *   npm run bench -- --mock            # ioredis-mock (no scale or memory sections)
 *   npm run bench -- --json out.json   # also write every figure as JSON
 *   npm run bench -- --help            # this text
 *   npm run bench -- --only operations,memory   # some sections only (operations, focus,
 *                                      # breakdown, history, truncate, listKeys, memory, append, watch)
 *
 * Every operation runs through one RedisConsensus with one connection, as a real worker would;
 * "in flight" is how many calls that worker has outstanding at once (a closed loop). Numbers on a
 * shared machine are noisy: compare the ratios within one run, which share the same noise.
 */
import { setMaxListeners } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Redis } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { RedisConsensus } from '../lib/index.js';
import type { OperationName } from '../lib/index.js';
import { keyNames } from '../lib/layout.js';
import { COMMANDS, defineScripts, EPOCH_ENVELOPE } from '../lib/scripts.js';
import { encodeSeqNo } from '../lib/seqno.js';
import { appendAcrossProcesses, appendInProcess } from './bench-append.js';
import { run as runFollow } from './bench/follow.js';
import type { AppendRow } from './bench-append.js';
import {
  commandStats, coalescing, deletePrefix, info, measureGroup, num, percentile, populate, ratio, registerKeys, sleep,
  startServer, table, usedMemory,
} from './bench-support.js';
import type { Case, Stats } from './bench-support.js';
import type { RedisServer } from '../spec/support/redis-server.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    mock: { type: 'boolean', default: false },
    json: { type: 'string' },
    only: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help === true) {
  // The usage is this file's header comment.
  console.log(readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0]!.replace(/^\/\*\*\n|^ \* ?/gm, ''));
  process.exit(0);
}
const QUICK = args.quick === true;
const MOCK = args.mock === true;
const SECTIONS = new Set((args.only ?? 'operations,focus,breakdown,history,truncate,listKeys,memory,append,watch').split(','));
/** Ports for the bench's own redis-server (loopback only). */
const PORTS = { first: 7400, last: 7449 };
const MOCK_PORT = 7400;
const PAYLOAD = randomPayload(1024);
// Overridable for investigations (e.g. BENCH_IN_FLIGHT=64 BENCH_KEYS=64 BENCH_CASES='SET|compareAndSet').
const IN_FLIGHT = (process.env.BENCH_IN_FLIGHT ?? '1,16,64').split(',').map(Number);
const KEY_COUNTS = (process.env.BENCH_KEYS ?? '1,64').split(',').map(Number);
const CASES = new RegExp(process.env.BENCH_CASES ?? '.');
/** Calls per cell of the operation matrix. */
const OPS = MOCK ? 300 : QUICK ? 1500 : 20000;
const LIST_CALLS = MOCK ? 4 : QUICK ? 16 : 128;
const WARMUP = MOCK ? 20 : QUICK ? 100 : 500;
/**
 * Warm-up calls of each case in the first group measured: until V8 has optimised the deeper call
 * paths (about 10,000 calls), client CPU per compareAndSet is ~1.6x its steady state, and a
 * long-running worker lives in the steady state.
 */
const JIT_WARMUP = MOCK ? 20 : 10000;
/** Interleaving rounds per group of cases (see measureGroup). */
const ROUNDS = MOCK ? 2 : QUICK ? 4 : 10;
const HISTORY = 100;

/** The design's floor: only the unavoidable storage work of a compare-and-set. */
const FLOOR_LUA = `
local head = redis.call('ZRANGE', KEYS[1], -1, -1)[1]
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1`;

type Operation = OperationName;
type Baseline = 'PING' | 'SET' | 'SET (autopipelined)' | 'SET (coalesced)' | 'floor EVALSHA' |
  'floor EVALSHA (autopipelined)' | 'floor EVALSHA (coalesced)';

interface Cell extends Stats {
  readonly name: Operation | Baseline;
  readonly inFlight: number;
  readonly keys: number;
}

const report: Record<string, unknown> = {};

setFlagsFromString('--expose-gc');
/** A full garbage collection, run between measured slices. */
const gc = runInNewContext('gc') as () => void;
let progressText = '';

function progress(text: string): void {
  progressText = text;
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K[bench] ${text}`);
  else process.stderr.write(`[bench] ${text}\n`);
}

function say(text = ''): void {
  if (process.stderr.isTTY && progressText !== '') process.stderr.write('\r\x1b[K');
  process.stdout.write(`${text}\n`);
}

function randomPayload(size: number): Buffer {
  const payload = Buffer.alloc(size);
  for (let i = 0; i < size; i++) payload[i] = (i * 131 + 7) & 0xff;
  return payload;
}

/** Connections of the run: made by `connect` as the library's users would. */
interface Rig {
  readonly url: string | null;
  readonly server: RedisServer | null;
  /** For setup, inspection and the concurrent PING probe. */
  readonly raw: Redis;
  client(options?: { autoPipelining?: boolean }): Redis;
  consensus(prefix: string): Promise<RedisConsensus>;
}

async function rig(): Promise<Rig> {
  if (MOCK) {
    const client = (): Redis => new RedisMock({ port: MOCK_PORT });
    return {
      url: null, server: null, raw: client(), client,
      consensus: async (prefix) => new RedisConsensus(client(), { prefix }),
    };
  }
  const server = process.env.REDIS_URL === undefined ? await startServer(PORTS.first, PORTS.last) : null;
  const url = process.env.REDIS_URL ?? server!.url;
  const client = (options: { autoPipelining?: boolean } = {}): Redis =>
    new Redis(url, { autoResendUnfulfilledCommands: false, enableAutoPipelining: options.autoPipelining === true });
  return {
    url, server, raw: client(), client,
    consensus: (prefix) => RedisConsensus.connect(url, { prefix }),
  };
}

/** A per-key seqno counter: calls get consecutive seqnos in the order they are made. */
function counters(keys: number, start = 0n): bigint[] {
  return Array.from({ length: keys }, () => start);
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

const BASELINE_OF: Record<Operation, 'SET'> = {
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
  const casScript = (...args: (string | Buffer)[]): Promise<unknown> => scripts[COMMANDS.compareAndSet.buffer]!(...args);
  const headScript = (...args: (string | Buffer)[]): Promise<unknown> => scripts[COMMANDS.head.buffer]!(...args);
  const n = QUICK ? 3000 : 20000;
  await populate(r.raw, space, 'read', 0n, HISTORY, PAYLOAD);
  const read = keyNames(space, 'read');
  let scriptEpoch = '';
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
    ['compareAndSet script (EVALSHA), no library', 'evalsha', async () => {
      const names = keyNames(space, 'script');
      const seqno = step('script');
      const reply = await casScript(names.versions, names.data, names.registry, names.epoch,
        seqno === 0n ? '' : encodeSeqNo(seqno - 1n), encodeSeqNo(seqno), PAYLOAD, names.member, names.heads, '',
        scriptEpoch, scriptEpoch === '' ? 'bench' : '');
      // The first commit creates the bucket's epoch marker; later calls pass it, as the library does.
      if (Array.isArray(reply) && reply[0] === EPOCH_ENVELOPE) scriptEpoch = String(reply[1]);
      return reply;
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

interface HistoryRow { versions: number; op: string; inFlight: number; p50us: number; p99us: number; opsPerSec: number }

async function historyScale(r: Rig, prefix: string): Promise<HistoryRow[]> {
  const rows: HistoryRow[] = [];
  const sizes = MOCK ? [100, 1000] : [100, 10000, 100000];
  const calls = MOCK ? 100 : QUICK ? 1000 : 5000;
  const space = `${prefix}-history`;
  const consensus = await r.consensus(space);
  for (const versions of sizes) {
    progress(`populating ${num(versions)} versions`);
    await populate(r.raw, space, `h${versions}`, 0n, versions, PAYLOAD);
  }
  for (const inFlight of [1, 16]) {
    const cases: Case[] = sizes.flatMap((versions) => {
      const key = `h${versions}`;
      const from = Math.max(0, versions - 100);
      return [
        { name: `head ${versions}`, calls, warmup: 50, call: () => consensus.head(key) },
        {
          name: `scan ${versions}`, calls: Math.ceil(calls / 5), warmup: 20, call: async () => {
            const got = await consensus.scan(key, from, 100);
            if (got.length !== 100) throw new Error(`scan returned ${got.length} versions`);
          },
        },
      ];
    });
    const results = await measureGroup(inFlight, cases, ROUNDS, undefined, (round) =>
      progress(`head/scan against history length, ${inFlight} in flight: round ${round + 1}/${ROUNDS}`));
    for (const op of ['head', 'scan']) {
      for (const versions of sizes) {
        const stats = results.get(`${op} ${versions}`)!;
        rows.push({
          versions, op: op === 'head' ? 'head' : 'scan(limit 100)', inFlight,
          p50us: stats.p50us, p99us: stats.p99us, opsPerSec: stats.opsPerSec,
        });
      }
    }
  }
  await deletePrefix(r.raw, space);
  await consensus.close();
  say('## head and scan(from, limit 100) against history length (1 key, 1 KiB payloads)');
  say();
  const base = (op: string, inFlight: number): HistoryRow | undefined =>
    rows.find((row) => row.versions === sizes[0] && row.op === op && row.inFlight === inFlight);
  say(table(['operation', 'versions', 'in flight', 'ops/s', 'p50 us', 'p99 us', `p50 x${sizes[0]}`], rows.map((row) => [
    row.op, num(row.versions), String(row.inFlight), num(row.opsPerSec), num(row.p50us), num(row.p99us),
    ratio(row.p50us, base(row.op, row.inFlight)?.p50us ?? NaN),
  ])));
  say();
  return rows;
}

interface TruncateRow { versions: number; ms: number; serverMs: number; worstPingMs: number; pingsDuring: number }

async function truncateScale(r: Rig, prefix: string): Promise<TruncateRow[]> {
  if (MOCK) return [];
  const rows: TruncateRow[] = [];
  const space = `${prefix}-truncate`;
  const consensus = await r.consensus(space);
  const probe = r.client();
  await probe.ping();
  const repeats = QUICK ? 1 : 3;
  for (const versions of [1000, 10000, 100000]) {
    for (let rep = 0; rep < repeats; rep++) {
      const key = `t${versions}-${rep}`;
      progress(`truncate of ${num(versions)} versions (${rep + 1}/${repeats}): populating`);
      await populate(r.raw, space, key, 0n, versions + 1, PAYLOAD);
      await sleep(100);
      // A PING loop on another connection: the longest wait it sees is how long Redis was blocked.
      let probing = true;
      let worst = 0;
      let pings = 0;
      let window: [number, number] = [0, 0];
      const pinger = (async () => {
        while (probing) {
          const started = performance.now();
          await probe.ping();
          const ended = performance.now();
          if (ended >= window[0] && window[0] > 0) {
            worst = Math.max(worst, ended - started);
            pings++;
          }
        }
      })();
      await sleep(20);
      const stats = await commandStats(r.raw, 'evalsha');
      progress(`truncate of ${num(versions)} versions (${rep + 1}/${repeats})`);
      const started = performance.now();
      window = [started, 0];
      const deleted = await consensus.truncate(key, versions);
      const ms = performance.now() - started;
      await sleep(30);
      probing = false;
      await pinger;
      const after = await commandStats(r.raw, 'evalsha');
      if (deleted !== versions) throw new Error(`truncate deleted ${deleted} of ${versions} versions`);
      rows.push({ versions, ms, serverMs: (after.usec - stats.usec) / 1000, worstPingMs: worst, pingsDuring: pings });
      await deletePrefix(r.raw, space);
    }
  }
  await consensus.close();
  await probe.quit();
  say('## truncate of a long history in one call (1 KiB payloads)');
  say('worst PING: the longest round trip of a PING loop on another connection meanwhile.');
  say();
  say(table(['versions deleted', 'duration ms', 'server ms', 'worst PING ms', 'PINGs'], rows.map((row) => [
    num(row.versions), num(row.ms, 1), num(row.serverMs, 1), num(row.worstPingMs, 1), String(row.pingsDuring),
  ])));
  say();
  return rows;
}

interface ListRow { keys: number; ms: number; baseHeapMB: number; peakHeapMB: number; peakRssMB: number }

async function listScale(r: Rig, prefix: string): Promise<ListRow[]> {
  const rows: ListRow[] = [];
  for (const count of MOCK ? [1000] : [10000, 100000]) {
    const space = `${prefix}-list${count}`;
    progress(`registering ${num(count)} keys`);
    await registerKeys(r.raw, space, Array.from({ length: count }, (_, i) => `key-${i}`));
    const consensus = await r.consensus(space);
    progress(`listKeys over ${num(count)} keys`);
    gc();
    const base = process.memoryUsage();
    let peakHeap = base.heapUsed;
    let peakRss = base.rss;
    const sample = (): void => {
      const now = process.memoryUsage();
      peakHeap = Math.max(peakHeap, now.heapUsed);
      peakRss = Math.max(peakRss, now.rss);
    };
    const sampler = setInterval(sample, 5);
    const started = performance.now();
    let listed = 0;
    for await (const key of consensus.listKeys()) {
      if (key.length > 0) listed++;
      if (listed % 500 === 0) sample();
    }
    const ms = performance.now() - started;
    clearInterval(sampler);
    sample();
    if (listed !== count) throw new Error(`listKeys yielded ${listed} of ${count} keys`);
    rows.push({ keys: count, ms, baseHeapMB: base.heapUsed / 2 ** 20, peakHeapMB: peakHeap / 2 ** 20, peakRssMB: peakRss / 2 ** 20 });
    await consensus.close();
    await deletePrefix(r.raw, space);
  }
  say('## listKeys over many keys (each listed exactly once)');
  say('heap: process.memoryUsage().heapUsed sampled during the iteration; the keys are consumed, not kept.');
  say();
  say(table(['keys', 'duration ms', 'keys/s', 'heap before MB', 'peak heap MB', 'growth MB'], rows.map((row) => [
    num(row.keys), num(row.ms), num(row.keys / (row.ms / 1000)), num(row.baseHeapMB, 1), num(row.peakHeapMB, 1),
    num(row.peakHeapMB - row.baseHeapMB, 1),
  ])));
  say();
  return rows;
}

interface MemoryRow { payload: number; shape: string; bytesPerVersion: number; overhead: number }

async function memoryScale(r: Rig, prefix: string): Promise<MemoryRow[]> {
  if (MOCK) return [];
  const rows: MemoryRow[] = [];
  const space = `${prefix}-memory`;
  const measureShape = async (fill: () => Promise<void>): Promise<number> => {
    const before = await usedMemory(r.raw);
    await fill();
    const after = await usedMemory(r.raw);
    await deletePrefix(r.raw, space);
    return after - before;
  };
  const long = 10000;
  const keys = 1000;
  for (const size of [16, 1024]) {
    const payload = randomPayload(size);
    progress(`memory per version, ${size} B payloads`);
    const longHistory = await measureShape(() => populate(r.raw, space, 'long', 0n, long, payload));
    const oneEach = await measureShape(async () => {
      for (let k = 0; k < keys; k++) await populate(r.raw, space, `k${k}`, 0n, 1, payload);
    });
    const elevenEach = await measureShape(async () => {
      for (let k = 0; k < keys; k++) await populate(r.raw, space, `k${k}`, 0n, 11, payload);
    });
    const hashOnly = await measureShape(async () => {
      const fields: (string | Buffer)[] = [];
      for (let i = 0; i < long; i++) fields.push(encodeSeqNo(BigInt(i)), payload);
      for (let i = 0; i < fields.length; i += 2000) await r.raw.hset(`${space}:floor`, ...fields.slice(i, i + 2000));
    });
    const add = (shape: string, bytes: number): void => {
      rows.push({ payload: size, shape, bytesPerVersion: bytes, overhead: bytes - size });
    };
    add(`one key, ${num(long)} versions (per version)`, longHistory / long);
    add(`${num(keys)} keys, 11 versions: each version after the first`, (elevenEach - oneEach) / (keys * 10));
    add(`${num(keys)} keys, 1 version: per key (first version incl.)`, oneEach / keys);
    add(`floor: one hash field per version, no index (${num(long)})`, hashOnly / long);
  }
  const config = await r.raw.config('GET', '*-max-listpack-*') as string[];
  say('## Redis memory per stored version (INFO memory used_memory deltas)');
  say(`server encodings config: ${config.join(' ')} (reported, not changed)`);
  say();
  say(table(['payload B', 'shape', 'bytes', 'bytes - payload'], rows.map((row) => [
    String(row.payload), row.shape, num(row.bytesPerVersion, 1), num(row.overhead, 1),
  ])));
  say();
  return rows;
}

/** Latency percentiles of samples in ms. */
function latency(samples: number[]): { p50ms: number; p99ms: number; n: number } {
  const sorted = Float64Array.from(samples).sort();
  return { p50ms: percentile(sorted, 0.5), p99ms: percentile(sorted, 0.99), n: samples.length };
}

/**
 * Watch: how soon a watcher learns of a commit (pub/sub vs a 100 ms head() poll loop vs one round
 * trip), what 1,000 idle watches cost Redis (pub/sub vs polling every 100 ms), and what the
 * announcement adds to a compare-and-set (with vs without, and with a watcher listening).
 */
async function watchBench(r: Rig, prefix: string): Promise<Record<string, unknown>> {
  if (MOCK) return {};
  const space = `${prefix}-watch`;
  const results: Record<string, unknown> = {};
  const writer = await r.consensus(space);
  const watcher = await r.consensus(space);
  const poller = await RedisConsensus.connect(r.url!, { prefix: space, watch: { mode: 'poll', pollIntervalMs: 100 } });
  const commits = QUICK ? 100 : 400;
  // Commit -> watcher: from the writer's call to the watch yielding that head.
  const measureLatency = async (consensus: RedisConsensus, key: string, count: number, gapMs: number): Promise<number[]> => {
    const samples: number[] = [];
    const sent = new Map<bigint, number>();
    const ac = new AbortController();
    let expected: bigint | null = null;
    const watching = (async () => {
      for await (const head of consensus.watch(key, { signal: ac.signal })) {
        const at = sent.get(head.seqno);
        if (at !== undefined) samples.push(performance.now() - at);
        if (head.seqno === BigInt(count - 1)) return;
      }
    })();
    await sleep(100);
    for (let i = 0; i < count; i++) {
      progress(`watch latency (${key}): commit ${i + 1}/${count}`);
      const seqno = BigInt(i);
      sent.set(seqno, performance.now());
      await writer.compareAndSet(key, expected, { seqno, data: PAYLOAD });
      expected = seqno;
      await sleep(Math.random() * gapMs);
    }
    await watching;
    ac.abort();
    return samples;
  };
  const pings: number[] = [];
  for (let i = 0; i < 200; i++) {
    const started = performance.now();
    await r.raw.ping();
    pings.push(performance.now() - started);
  }
  const pubsub = latency(await measureLatency(watcher, 'latency-pubsub', commits, 20));
  const polled = latency(await measureLatency(poller, 'latency-poll', QUICK ? 40 : 100, 150));
  const roundTrip = latency(pings);
  results.latency = { pubsub, poll100ms: polled, ping: roundTrip };
  say('## watch: commit -> watcher latency (from the compareAndSet call to the watch yielding it)');
  say();
  say(table(['how', 'samples', 'p50 ms', 'p99 ms'], [
    ['watch (pub/sub)', String(pubsub.n), num(pubsub.p50ms, 2), num(pubsub.p99ms, 2)],
    ['watch polling head() every 100 ms', String(polled.n), num(polled.p50ms, 2), num(polled.p99ms, 2)],
    ['one round trip (PING)', String(roundTrip.n), num(roundTrip.p50ms, 2), num(roundTrip.p99ms, 2)],
  ]));
  say();

  // 1,000 idle watches: commands Redis runs per second while nothing changes.
  const idle = async (consensus: RedisConsensus, label: string): Promise<{ commandsPerSec: number; scriptsPerSec: number }> => {
    const ac = new AbortController();
    setMaxListeners(0, ac.signal);
    const keys = Array.from({ length: 1000 }, (_, i) => `idle-${label}-${i}`);
    await Promise.all(keys.map((key) => writer.compareAndSet(key, null, { seqno: 0, data: PAYLOAD })));
    let started = 0;
    const loops = keys.map(async (key) => {
      for await (const head of consensus.watch(key, { signal: ac.signal })) if (head.seqno === 0n) started++;
    });
    while (started < keys.length) await sleep(20);
    await sleep(500);
    progress(`1,000 idle watches (${label})`);
    const before = await info(r.raw, 'all');
    await sleep(3000);
    const after = await info(r.raw, 'all');
    ac.abort();
    await Promise.all(loops);
    const evalsha = (fields: Map<string, string>): number => Number(/calls=(\d+)/.exec(fields.get('cmdstat_evalsha') ?? '')?.[1] ?? 0);
    return {
      // The first INFO counts in `after`; commands inside scripts count too.
      commandsPerSec: (Number(after.get('total_commands_processed')) - Number(before.get('total_commands_processed')) - 1) / 3,
      scriptsPerSec: (evalsha(after) - evalsha(before)) / 3,
    };
  };
  const idlePubsub = await idle(watcher, 'pubsub');
  const idlePoll = await idle(poller, 'poll');
  results.idle = { pubsub: idlePubsub, poll100ms: idlePoll, shared: r.server === null };
  say('## watch: Redis commands per second with 1,000 idle watches (INFO stats deltas over 3 s)');
  if (r.server === null) say('(REDIS_URL is shared: other clients\' commands count too)');
  say();
  say(table(['how', 'commands/s', 'of which head scripts/s'], [
    ['watch (pub/sub)', num(idlePubsub.commandsPerSec), num(idlePubsub.scriptsPerSec)],
    ['watch polling every 100 ms', num(idlePoll.commandsPerSec), num(idlePoll.scriptsPerSec)],
  ]));
  say();

  // The announcement's cost: compareAndSet with it, without it, and with a watcher listening.
  const quiet = await RedisConsensus.connect(r.url!, { prefix: space, watch: { announce: false } });
  const keys = 64;
  const next = { announced: counters(keys), quiet: counters(keys), heard: counters(keys) };
  const ac = new AbortController();
  setMaxListeners(0, ac.signal);
  const heardLoops = Array.from({ length: keys }, async (_, k) => {
    for await (const head of watcher.watch(`cas-heard-${k}`, { signal: ac.signal })) void head;
  });
  const cas = (consensus: RedisConsensus, label: keyof typeof next) => async (i: number): Promise<unknown> => {
    const k = i % keys;
    const seqno = next[label][k]!;
    next[label][k] = seqno + 1n;
    return consensus.compareAndSet(`cas-${label}-${k}`, seqno === 0n ? null : seqno - 1n, { seqno, data: PAYLOAD });
  };
  const cells: Record<string, unknown>[] = [];
  for (const inFlight of [1, 64]) {
    const calls = QUICK ? 4000 : 20000;
    const cases: Case[] = [
      { name: 'compareAndSet, announced', serverCommand: 'evalsha', calls, warmup: WARMUP, call: cas(writer, 'announced') },
      { name: 'compareAndSet, announce: false', serverCommand: 'evalsha', calls, warmup: WARMUP, call: cas(quiet, 'quiet') },
      { name: 'compareAndSet, announced, 1 watcher per key (in this process)', serverCommand: 'evalsha', calls, warmup: WARMUP, call: cas(writer, 'heard') },
    ];
    const measured = await measureGroup(inFlight, cases, ROUNDS, (command) => commandStats(r.raw, command),
      (round) => progress(`compareAndSet with and without announcement, ${inFlight} in flight: round ${round + 1}/${ROUNDS}`));
    for (const c of cases) cells.push({ name: c.name, inFlight, ...measured.get(c.name)! });
  }
  ac.abort();
  await Promise.all(heardLoops);
  results.announcement = cells;
  say('## watch: what the announcement adds to compareAndSet (64 keys, 1 KiB, interleaved rounds)');
  say();
  const base = (inFlight: number): Stats =>
    cells.find((cell) => cell.name === 'compareAndSet, announce: false' && cell.inFlight === inFlight) as unknown as Stats;
  say(table(['call', 'in flight', 'ops/s', 'p50 us', 'p99 us', 'server us', 'ops vs no announcement'], cells.map((cell) => {
    const stats = cell as unknown as Stats & { name: string; inFlight: number };
    return [stats.name, String(stats.inFlight), num(stats.opsPerSec), num(stats.p50us), num(stats.p99us),
      num(stats.serverUsPerOp ?? NaN, 1), ratio(stats.opsPerSec, base(stats.inFlight).opsPerSec)];
  })));
  say();
  await Promise.all([writer.close(), watcher.close(), poller.close(), quiet.close()]);
  await deletePrefix(r.raw, space);
  return results;
}

interface Target { target: string; measured: string; pass: boolean }

function targets(
  cells: readonly Cell[], history: readonly HistoryRow[], truncates: readonly TruncateRow[], memory: readonly MemoryRow[],
): Target[] {
  const out: Target[] = [];
  for (const keys of [...new Set(cells.map((cell) => cell.keys))]) {
    const cas = find(cells, 'compareAndSet', 1, keys);
    const set = [find(cells, 'SET', 1, keys), find(cells, 'SET (autopipelined)', 1, keys)]
      .filter((c): c is Cell => c !== undefined).sort((a, b) => a.p50us - b.p50us)[0];
    const floor = [find(cells, 'floor EVALSHA', 1, keys), find(cells, 'floor EVALSHA (autopipelined)', 1, keys)]
      .filter((c): c is Cell => c !== undefined).sort((a, b) => a.p50us - b.p50us)[0];
    if (cas && set) {
      out.push({
        target: `sequential compareAndSet p50 <= 1.3x sequential SET p50 (${keys} key${keys > 1 ? 's' : ''})`,
        measured: `${num(cas.p50us)} us vs ${num(set.p50us)} us = ${ratio(cas.p50us, set.p50us)}` +
          (floor ? ` (raw floor script: ${ratio(floor.p50us, set.p50us)})` : ''),
        pass: cas.p50us <= 1.3 * set.p50us,
      });
    }
  }
  const cas = find(cells, 'compareAndSet', 64, 64);
  const floor = best(cells, 'floor EVALSHA', 64, 64);
  const set = best(cells, 'SET', 64, 64);
  if (cas && floor) {
    out.push({
      target: 'compareAndSet ops/s at 64 in flight over 64 keys >= 0.9x raw-script floor',
      measured: `${num(cas.opsPerSec)} vs ${num(floor.opsPerSec)} (${floor.name}) = ${ratio(cas.opsPerSec, floor.opsPerSec)}`,
      pass: cas.opsPerSec >= 0.9 * floor.opsPerSec,
    });
  }
  if (cas && set) {
    out.push({
      target: 'compareAndSet ops/s at 64 in flight over 64 keys >= 0.5x best SET',
      measured: `${num(cas.opsPerSec)} vs ${num(set.opsPerSec)} (${set.name}) = ${ratio(cas.opsPerSec, set.opsPerSec)}`,
      pass: cas.opsPerSec >= 0.5 * set.opsPerSec,
    });
  }
  for (const op of ['head', 'scan(limit 100)']) {
    const at = (versions: number): HistoryRow | undefined =>
      history.find((row) => row.op === op && row.versions === versions && row.inFlight === 1);
    const small = at(100);
    const big = at(100000);
    if (small && big) {
      out.push({
        target: `${op} p50 at 100,000 versions within 1.5x of 100 versions`,
        measured: `${num(big.p50us)} us vs ${num(small.p50us)} us = ${ratio(big.p50us, small.p50us)}`,
        pass: big.p50us <= 1.5 * small.p50us,
      });
    }
  }
  const big = truncates.filter((row) => row.versions === 100000);
  if (big.length > 0) {
    const worstMs = Math.max(...big.map((row) => row.ms));
    const worstPing = Math.max(...big.map((row) => row.worstPingMs));
    out.push({
      target: 'truncate of 100,000 versions < 100 ms',
      measured: `worst of ${big.length}: ${num(worstMs, 1)} ms (server ${num(Math.max(...big.map((row) => row.serverMs)), 1)} ms)`,
      pass: worstMs < 100,
    });
    out.push({
      target: 'no concurrent PING waits 100 ms or more meanwhile',
      measured: `worst PING ${num(worstPing, 1)} ms`,
      pass: worstPing < 100,
    });
  }
  for (const row of memory.filter((m) => !m.shape.startsWith('floor') && !m.shape.includes('per key'))) {
    out.push({
      target: `memory per version <= payload + 100 B (${row.payload} B payload, ${row.shape})`,
      measured: `${num(row.bytesPerVersion)} B = payload + ${num(row.overhead)} B`,
      pass: row.overhead <= 100,
    });
  }
  say('## Targets');
  say();
  say(table(['', 'target', 'measured'], out.map((t) => [t.pass ? 'PASS' : 'MISS', t.target, t.measured])));
  say();
  return out;
}

/**
 * `append` against the README's loop (head, compareAndSet, re-read on a mismatch), same run,
 * interleaved: one writer on a key; 32 writers on one key in one process; 8 processes on one key.
 */
async function appendSection(r: Rig, prefix: string): Promise<AppendRow[]> {
  const space = `${prefix}-append`;
  const consensus = await r.consensus(space);
  const rows: AppendRow[] = [];
  const calls = MOCK ? 100 : QUICK ? 1500 : 4000;
  const [loop1, append1] = await appendInProcess(consensus, space, 1, calls, ROUNDS, PAYLOAD, progress);
  rows.push({ scenario: '(a) 1 writer on a key', loop: loop1!, append: append1! });
  const [loop32, append32] = await appendInProcess(consensus, space, 32, calls, ROUNDS, PAYLOAD, progress);
  rows.push({ scenario: '(b) 32 writers on one key, one process', loop: loop32!, append: append32! });
  if (!MOCK) {
    const [loopP, appendP] = await appendAcrossProcesses(r.url!, space, 8, QUICK ? 1000 : 2000, QUICK ? 2 : 4, progress);
    rows.push({ scenario: '(c) 8 processes x 1 writer on one key', loop: loopP!, append: appendP! });
  }
  await consensus.close();
  await deletePrefix(r.raw, space);
  const targetOf = [1.6, 5, 1.4];
  say('## append against the README loop (head + compareAndSet, re-read on mismatch), 1 KiB payloads');
  say('Commits per second and latency per commit (retries included), measured in the same run.');
  say();
  say(table(['scenario', 'loop commits/s', 'append commits/s', 'x loop', 'target', '', 'loop p50/p99 us', 'append p50/p99 us'],
    rows.map((row, i) => {
      const times = row.append.opsPerSec / row.loop.opsPerSec;
      return [row.scenario, num(row.loop.opsPerSec), num(row.append.opsPerSec), ratio(row.append.opsPerSec, row.loop.opsPerSec),
        `>= ${targetOf[i]}x`, MOCK ? '' : times >= targetOf[i]! ? 'PASS' : 'MISS',
        `${num(row.loop.p50us)} / ${num(row.loop.p99us)}`, `${num(row.append.p50us)} / ${num(row.append.p99us)}`];
    })));
  say();
  return rows;
}

async function main(): Promise<void> {
  const started = performance.now();
  const r = await rig();
  const prefix = `bench-${process.pid}-${Date.now().toString(36)}`;
  const serverInfo = MOCK ? 'ioredis-mock' : `redis ${(await r.raw.info('server')).match(/redis_version:(\S+)/)?.[1]}`;
  report.meta = {
    date: new Date().toISOString(), node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model,
    loadavgAtStart: loadavg(), server: serverInfo,
    where: MOCK ? 'ioredis-mock' : r.server ? `own redis-server on port ${r.server.port}` : 'REDIS_URL',
    quick: QUICK, payloadBytes: PAYLOAD.length, callsPerCell: OPS,
  };
  say(`# redis-consensus bench: ${serverInfo} (${String((report.meta as Record<string, unknown>).where)}), ` +
    `node ${process.version}, ${cpus().length} cpus, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}` +
    `${QUICK ? ', --quick' : ''}`);
  say();
  try {
    // Each section starts from a collected heap, so none pays for the garbage of the one before;
    // the focused compare-and-set measurement runs first, in a process that has done little else.
    gc();
    const focused = SECTIONS.has('focus') ? await focus(r, prefix) : [];
    report.focus = focused;
    gc();
    const cells = SECTIONS.has('operations') ? await operationMatrix(r, prefix) : [];
    report.operations = cells;
    if (cells.length > 0) printMatrix(cells);
    gc();
    report.breakdown = SECTIONS.has('breakdown') ? await breakdown(r, prefix) : [];
    gc();
    const history = SECTIONS.has('history') ? await historyScale(r, prefix) : [];
    report.history = history;
    const truncates = SECTIONS.has('truncate') ? await truncateScale(r, prefix) : [];
    report.truncate = truncates;
    report.listKeys = SECTIONS.has('listKeys') ? await listScale(r, prefix) : [];
    const memory = SECTIONS.has('memory') ? await memoryScale(r, prefix) : [];
    report.memory = memory;
    gc();
    report.append = SECTIONS.has('append') ? await appendSection(r, prefix) : [];
    if (SECTIONS.has('watch')) report.watch = await watchBench(r, prefix);
    if (SECTIONS.has('follow')) await runFollow(process.argv.slice(2));
    // The compare-and-set targets are judged on the focused measurement when there is one.
    if (MOCK) {
      say('ioredis-mock runs every script in a fresh JavaScript Lua VM: its figures check that the bench');
      say('runs, and say nothing about Redis. Targets are judged on a real Redis only.');
    } else {
      report.targets = targets(focused.length > 0 ? focused : cells, history, truncates, memory);
    }
  } finally {
    progress('cleaning up');
    await deletePrefix(r.raw, prefix).catch(() => {});
    r.raw.disconnect();
    await r.server?.stop();
  }
  (report.meta as Record<string, unknown>).seconds = (performance.now() - started) / 1000;
  (report.meta as Record<string, unknown>).loadavgAtEnd = loadavg();
  if (args.json !== undefined) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
  say(`done in ${num((performance.now() - started) / 1000, 1)} s${args.json ? `; JSON in ${args.json}` : ''}`);
}

main().then(() => process.exit(0), (err: unknown) => {
  say(`bench failed: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
