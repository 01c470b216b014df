/**
 * The peers family (`--only peers`, or `scripts/etcd-compare.sh`, which installs Debian's
 * etcd-server first): this library on Redis side by side with etcd (the `etcd3` client), the
 * usual store for the same job, on this machine, in one run, loopback only.
 *
 * The same three pieces of work on both:
 * - compare-and-set: one writer, each commit conditional on the version it read last
 *   (Redis: `compareAndSet(key, s - 1, s)`; etcd: a txn `if version(key) == v then put`);
 * - contended append: 8 writers in this process, each with its own connection, appending to one
 *   key with the read → compare-and-set → retry loop (etcd: get, then the txn);
 * - watch: commit → watcher latency, one commit at a time (`watch(key)` / an etcd watcher).
 *
 * Durable: fsync before acknowledging (etcd's default, its data on disk; Redis with
 * `appendonly yes`, `appendfsync always`, on the same disk). Not durable: no fsync (etcd with its
 * data on tmpfs, where fsync is free; etcd 3.4 has no `--unsafe-no-fsync`; Redis without
 * persistence). Every cell runs once per round, rounds interleave both systems so they share the
 * machine's noise; ratios are Redis ÷ etcd per round, reported as min-max over the rounds.
 *
 * Ports (loopback): Redis 7894 (durable) and 7895, etcd 7890/7891 (durable) and 7892/7893.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Etcd3 } from 'etcd3';
import { CaSResult, RedisConsensus } from '../../lib/index.js';
import { RedisServer } from '../../spec/support/redis-server.js';
import { num, percentile, sleep, table } from '../bench-support.js';

type System = 'redis' | 'etcd';
type Mode = 'durable' | 'not durable';
type Work = 'compare-and-set' | 'contended append (8 writers)' | 'watch';
const WORKS: readonly Work[] = ['compare-and-set', 'contended append (8 writers)', 'watch'];
const MODES: readonly Mode[] = ['durable', 'not durable'];
const WRITERS = 8;
const PAYLOAD = Buffer.alloc(1024, 7);

/** One measurement: commits per second and latency percentiles in µs. */
interface Figures { opsPerSec: number; p50us: number; p99us: number }

/** A system under test, one mode: how to run each work on it. */
interface Subject {
  run(work: Work, label: string, seconds: number): Promise<Figures>;
  close(): Promise<void>;
}

function figures(latenciesMs: number[], seconds: number): Figures {
  const sorted = Float64Array.from(latenciesMs).sort();
  return { opsPerSec: latenciesMs.length / seconds, p50us: percentile(sorted, 0.5) * 1000, p99us: percentile(sorted, 0.99) * 1000 };
}

/** Runs `step` in a closed loop on `writers` workers for `seconds`; each step's latency is one sample. */
async function closedLoop(writers: number, seconds: number, step: (writer: number) => Promise<void>): Promise<Figures> {
  const latencies: number[] = [];
  const until = performance.now() + seconds * 1000;
  await Promise.all(Array.from({ length: writers }, async (_, writer) => {
    while (performance.now() < until) {
      const started = performance.now();
      await step(writer);
      latencies.push(performance.now() - started);
    }
  }));
  return figures(latencies, seconds);
}

/** RedisServer keeps its files in a temporary directory on disk (/tmp), as etcd's durable data dir. */
async function redisSubject(mode: Mode, port: number): Promise<Subject & { server: RedisServer }> {
  const args = mode === 'durable'
    ? ['--appendonly', 'yes', '--appendfsync', 'always', '--save', '']
    : ['--appendonly', 'no', '--save', ''];
  const server = await RedisServer.start({ port, args });
  const prefix = `peers-${process.pid}`;
  const stores = await Promise.all(Array.from({ length: WRITERS + 1 }, () => RedisConsensus.connect(server.url, { prefix })));
  const writer = stores[0]!;
  return {
    server,
    async run(work, label, seconds) {
      if (work === 'compare-and-set') {
        let seqno = -1n;
        const key = `cas-${label}`;
        return closedLoop(1, seconds, async () => {
          const next = seqno + 1n;
          if (await writer.compareAndSet(key, seqno < 0n ? null : seqno, { seqno: next, data: PAYLOAD }) !== CaSResult.Committed) {
            throw new Error('an uncontended compare-and-set mismatched');
          }
          seqno = next;
        });
      }
      if (work === 'contended append (8 writers)') {
        const key = `append-${label}`;
        return closedLoop(WRITERS, seconds, async (w) => {
          const store = stores[w + 1]!;
          for (;;) {
            const head = await store.head(key);
            const next = { seqno: head === null ? 0n : head.seqno + 1n, data: PAYLOAD };
            if (await store.compareAndSet(key, head?.seqno ?? null, next) === CaSResult.Committed) return;
          }
        });
      }
      // watch: one commit at a time, timed until the watcher yields it.
      const key = `watch-${label}`;
      const watcher = stores[1]!;
      const stop = new AbortController();
      const heads = watcher.watch(key, { signal: stop.signal })[Symbol.asyncIterator]();
      let seqno = -1n;
      const result = await closedLoop(1, seconds, async () => {
        const next = seqno + 1n;
        const seen = heads.next();
        await writer.compareAndSet(key, seqno < 0n ? null : seqno, { seqno: next, data: PAYLOAD });
        seqno = next;
        // The first head read can race the commit; wait for this commit's seqno.
        for (let head = await seen; !head.done && head.value.seqno < next; head = await heads.next());
      });
      stop.abort();
      await heads.return?.(undefined);
      return result;
    },
    async close() {
      await Promise.all(stores.map((store) => store.close()));
      await server.stop();
    },
  };
}

async function etcdSubject(mode: Mode, clientPort: number, dir: string): Promise<Subject & { process: ChildProcess }> {
  const url = `http://127.0.0.1:${clientPort}`;
  const child = spawn('etcd', [
    '--name', `peers-${clientPort}`, '--data-dir', dir,
    '--listen-client-urls', url, '--advertise-client-urls', url,
    '--listen-peer-urls', `http://127.0.0.1:${clientPort + 1}`,
    '--initial-advertise-peer-urls', `http://127.0.0.1:${clientPort + 1}`,
    '--initial-cluster', `peers-${clientPort}=http://127.0.0.1:${clientPort + 1}`,
    '--log-level', 'error',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const clients = Array.from({ length: WRITERS + 1 }, () => new Etcd3({ hosts: url }));
  const writer = clients[0]!;
  for (let i = 0; ; i++) {
    try {
      await writer.get('ready').string();
      break;
    } catch (err) {
      if (i === 100 || child.exitCode !== null) throw new Error(`etcd (${mode}) did not start: ${(err as Error).message}\n${stderr}`);
      await sleep(100);
    }
  }
  /** Commits `data` iff the key's version is `version` (0: no key): etcd's compare-and-set. */
  const cas = async (client: Etcd3, key: string, version: number): Promise<boolean> =>
    (await client.if(key, 'Version', '==', version).then(client.put(key).value(PAYLOAD)).commit()).succeeded;
  return {
    process: child,
    async run(work, label, seconds) {
      if (work === 'compare-and-set') {
        let version = 0;
        const key = `cas-${label}`;
        return closedLoop(1, seconds, async () => {
          if (!(await cas(writer, key, version))) throw new Error('an uncontended etcd txn failed its compare');
          version++;
        });
      }
      if (work === 'contended append (8 writers)') {
        const key = `append-${label}`;
        return closedLoop(WRITERS, seconds, async (w) => {
          const client = clients[w + 1]!;
          for (;;) {
            const response = await client.get(key).exec();
            const version = Number(response.kvs[0]?.version ?? 0);
            if (await cas(client, key, version)) return;
          }
        });
      }
      const key = `watch-${label}`;
      const watcher = await clients[1]!.watch().key(key).create();
      let resolveSeen: (() => void) | undefined;
      let wanted = 0;
      watcher.on('put', (kv) => {
        if (Number(kv.version) >= wanted) resolveSeen?.();
      });
      let version = 0;
      const result = await closedLoop(1, seconds, async () => {
        wanted = version + 1;
        const seen = new Promise<void>((resolve) => { resolveSeen = resolve; });
        if (!(await cas(writer, key, version))) throw new Error('an uncontended etcd txn failed its compare');
        version++;
        await seen;
      });
      await watcher.cancel();
      return result;
    },
    async close() {
      for (const client of clients) client.close();
      child.kill('SIGTERM');
      await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve(undefined)));
    },
  };
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv, strict: false,
    options: { rounds: { type: 'string' }, seconds: { type: 'string' }, quick: { type: 'boolean' } },
  });
  if (spawnSync('etcd', ['--version'], { encoding: 'utf8' }).status !== 0) {
    console.log('peers: etcd is not installed; scripts/etcd-compare.sh installs Debian\'s etcd-server and runs this');
    return;
  }
  const rounds = Number(values.rounds ?? (values.quick === true ? 2 : 5));
  const seconds = Number(values.seconds ?? (values.quick === true ? 1 : 3));
  const disk = mkdtempSync(join(tmpdir(), 'peers-'));
  const shm = mkdtempSync(join('/dev/shm', 'peers-'));
  const subjects = new Map<string, Subject>();
  try {
    subjects.set('redis durable', await redisSubject('durable', 7894));
    subjects.set('redis not durable', await redisSubject('not durable', 7895));
    subjects.set('etcd durable', await etcdSubject('durable', 7890, join(disk, 'etcd')));
    subjects.set('etcd not durable', await etcdSubject('not durable', 7892, join(shm, 'etcd')));
    const samples = new Map<string, Figures[]>();
    for (let round = 0; round < rounds; round++) {
      for (const work of WORKS) {
        for (const mode of MODES) {
          // Alternate which system goes first.
          const order: System[] = round % 2 === 0 ? ['redis', 'etcd'] : ['etcd', 'redis'];
          for (const system of order) {
            process.stderr.write(`[peers] round ${round + 1}/${rounds}: ${system} ${mode}, ${work}\n`);
            const cell = `${system}|${mode}|${work}`;
            const result = await subjects.get(`${system} ${mode}`)!.run(work, `${round}-${mode === 'durable' ? 'd' : 'n'}`, seconds);
            samples.set(cell, [...(samples.get(cell) ?? []), result]);
          }
        }
      }
    }
    const rows: string[][] = [];
    for (const work of WORKS) {
      for (const mode of MODES) {
        const redis = samples.get(`redis|${mode}|${work}`)!;
        const etcd = samples.get(`etcd|${mode}|${work}`)!;
        const ratios = redis.map((r, i) => r.opsPerSec / etcd[i]!.opsPerSec);
        const median = (list: number[]): number => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
        rows.push([work, mode,
          `${num(median(redis.map((r) => r.opsPerSec)))} (${num(median(redis.map((r) => r.p50us)))} / ${num(median(redis.map((r) => r.p99us)))})`,
          `${num(median(etcd.map((r) => r.opsPerSec)))} (${num(median(etcd.map((r) => r.p50us)))} / ${num(median(etcd.map((r) => r.p99us)))})`,
          `${num(Math.min(...ratios), 1)}-${num(Math.max(...ratios), 1)}x`]);
      }
    }
    console.log(`## Redis (redis-consensus) and etcd side by side: ${rounds} rounds of ${seconds} s per cell, 1 KiB values`);
    console.log('Commits per second (medians over the rounds; p50 / p99 µs per commit in brackets); ratio = Redis ÷ etcd,');
    console.log('min-max over the rounds. Durable: fsync before the reply (etcd default; Redis appendfsync always).');
    console.log();
    console.log(table(['work', 'mode', 'Redis commits/s (p50 / p99 us)', 'etcd commits/s (p50 / p99 us)', 'Redis / etcd'], rows));
    console.log();
  } finally {
    await Promise.all([...subjects.values()].map((subject) => subject.close().catch(() => {})));
    rmSync(disk, { recursive: true, force: true });
    rmSync(shm, { recursive: true, force: true });
  }
}

// Run directly (scripts/etcd-compare.sh) as well as from the bench's dispatcher.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  run(process.argv.slice(2)).then(() => process.exit(0), (err: unknown) => {
    console.error(`peers failed: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  });
}
