/**
 * What every bench family shares: the command line (--quick, --mock, --json, --only), the run's
 * sizes, the connections (one redis-server of its own, REDIS_URL, or ioredis-mock), progress on
 * stderr and tables on stdout, and the JSON report. The dispatcher, scripts/bench.ts, closes the
 * rig and writes the report at the end.
 */
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Redis } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { RedisConsensus } from '../../lib/index.js';
import type { OperationName } from '../../lib/index.js';
import { startServer } from '../bench-support.js';
import type { Stats } from '../bench-support.js';
import type { RedisServer } from '../../spec/support/redis-server.js';

// strict: false: each family may read options of its own from the same command line.
export const { values: args } = parseArgs({
  args: process.argv.slice(2),
  strict: false,
  options: {
    quick: { type: 'boolean', default: false },
    mock: { type: 'boolean', default: false },
    json: { type: 'string' },
    only: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

/** The bench's families, each one file of scripts/bench/, and the sections of those that have several. */
export const FAMILIES: Readonly<Record<string, readonly string[]>> = {
  cas: ['focus', 'operations', 'breakdown', 'attribution'],
  sizes: ['history', 'truncate', 'listKeys', 'memory'],
  scale: [],
  lease: [],
  follow: [],
  append: ['append'],
  watch: ['watch'],
  peers: [],
};
/** What runs without --only (peers needs etcd: scripts/etcd-compare.sh). */
export const DEFAULT_FAMILIES: readonly string[] = ['cas', 'sizes', 'append', 'watch'];
/** Every section asked for; a family's name stands for all of its sections (`--only cas`). */
export const SECTIONS: ReadonlySet<string> = new Set(String(args.only ?? DEFAULT_FAMILIES.join(',')).split(',')
  .flatMap((name) => [name, ...(FAMILIES[name] ?? [])]));

export const QUICK = args.quick === true;
export const MOCK = args.mock === true;
/** Ports for the bench's own redis-server (loopback only). */
export const PORTS = { first: 7400, last: 7449 };
export const MOCK_PORT = 7400;
export const PAYLOAD = randomPayload(1024);
// Overridable for investigations (e.g. BENCH_IN_FLIGHT=64 BENCH_KEYS=64 BENCH_CASES='SET|compareAndSet').
export const IN_FLIGHT = (process.env.BENCH_IN_FLIGHT ?? '1,16,64').split(',').map(Number);
export const KEY_COUNTS = (process.env.BENCH_KEYS ?? '1,64').split(',').map(Number);
export const CASES = new RegExp(process.env.BENCH_CASES ?? '.');
/** Calls per cell of the operation matrix. */
export const OPS = MOCK ? 300 : QUICK ? 1500 : 20000;
export const LIST_CALLS = MOCK ? 4 : QUICK ? 16 : 128;
export const WARMUP = MOCK ? 20 : QUICK ? 100 : 500;
/**
 * Warm-up calls of each case in the first group measured: until V8 has optimised the deeper call
 * paths (about 10,000 calls), client CPU per compareAndSet is ~1.6x its steady state, and a
 * long-running worker lives in the steady state.
 */
export const JIT_WARMUP = MOCK ? 20 : 10000;
/** Interleaving rounds per group of cases (see measureGroup). */
export const ROUNDS = MOCK ? 2 : QUICK ? 4 : 10;
export const HISTORY = 100;

/** The design's floor: only the unavoidable storage work of a compare-and-set. */
export const FLOOR_LUA = `
local head = redis.call('ZRANGE', KEYS[1], -1, -1)[1]
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1`;

/**
 * Issue 19's bound: the storage calls that the epoch, rollback detection and a carried announcement
 * cannot do without (GET and SET of the bucket's marker, one PUBLISH carrying the payload) on top of
 * the floor's, with no check and no parsing. No script with those features can cost Redis less, so
 * floor/bound is the best 64-in-flight ratio any implementation inside the design could reach.
 * KEYS: versions, data, marker; ARGV: seqno, payload, the marker's next value, the channel.
 */
export const BOUND_LUA = `
local marker = redis.call('GET', KEYS[3])
local head = redis.call('ZRANGE', KEYS[1], -1, -1)[1]
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
redis.pcall('PUBLISH', ARGV[4], ARGV[2])
return 1`;

export type Operation = OperationName;
export type Baseline = 'PING' | 'SET' | 'SET (autopipelined)' | 'SET (coalesced)' | 'floor EVALSHA' |
  'floor EVALSHA (autopipelined)' | 'floor EVALSHA (coalesced)';

export interface Cell extends Stats {
  readonly name: Operation | Baseline;
  readonly inFlight: number;
  readonly keys: number;
}

export const report: Record<string, unknown> = {};

setFlagsFromString('--expose-gc');
/** A full garbage collection, run between measured slices. */
export const gc = runInNewContext('gc') as () => void;
let progressText = '';

export function progress(text: string): void {
  progressText = text;
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K[bench] ${text}`);
  else process.stderr.write(`[bench] ${text}\n`);
}

export function say(text = ''): void {
  if (process.stderr.isTTY && progressText !== '') process.stderr.write('\r\x1b[K');
  process.stdout.write(`${text}\n`);
}

export function randomPayload(size: number): Buffer {
  const payload = Buffer.alloc(size);
  for (let i = 0; i < size; i++) payload[i] = (i * 131 + 7) & 0xff;
  return payload;
}

/** Connections of the run: made by `connect` as the library's users would. */
export interface Rig {
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
export function counters(keys: number, start = 0n): bigint[] {
  return Array.from({ length: keys }, () => start);
}

let opened: Promise<Rig> | undefined;
/** The run's connections, made by the first family that asks, shared by the rest. */
export function sharedRig(): Promise<Rig> {
  opened ??= rig();
  return opened;
}

/** A prefix for one family's keys in this run. */
export const RUN_PREFIX = `bench-${process.pid}-${Date.now().toString(36)}`;

/** Ends the shared connections and the bench's own server, if any were made. */
export async function closeSharedRig(cleanUp: (r: Rig) => Promise<void>): Promise<void> {
  if (opened === undefined) return;
  const r = await opened;
  await cleanUp(r).catch(() => {});
  r.raw.disconnect();
  await r.server?.stop();
}
