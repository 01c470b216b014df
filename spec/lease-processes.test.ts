/**
 * Leases under contention and faults (issue 22): 16 contenders in 4 child processes
 * (support/lease-worker.ts) on servers this file starts in ports 7810-7814 and 7300-7312: a Redis
 * (the holder SIGSTOPped past the ttl, CLIENT KILL of every connection, the holder SIGKILLed), a
 * primary with two replicas under Sentinel (the primary crashes and a replica is promoted), and a
 * 3-primary Cluster (CLIENT KILL, the holder SIGKILLed). `LEASE_ONLY=redis|sentinel|cluster` runs
 * one case only. Each holder logs every moment it acted as the owner (the moment it checked
 * `lease.held`, mapped to the server's clock); afterwards:
 * - the acting intervals of different tokens never overlap (beyond the clock mapping's error), in
 *   token order, so tokens strictly increase with time;
 * - each handover (release or expiry) took at most the ttl plus a round trip (and scheduling slack
 *   on a shared machine), outside the failover itself;
 * - no wait, finished or still going at the end, took 10 s (plus a failover's outage): no waiter
 *   waits forever;
 * - at least 8 tenures in all, and after a failover the lease is taken again within the ttl, the
 *   slack and a second of reconnection, and held by at least 8 more tenures.
 */
import { fork, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Redis } from 'ioredis';
import { RedisConsensus } from '../lib/index.js';
import { SAFE_WRITE_OPTIONS } from '../lib/client.js';
import { freshPrefix } from './support/backends.js';
import { command, infoFields, redisServerAvailable, startSentinel, startServer, stopServers, until } from './support/cluster.js';
import type { RedisServer } from './support/redis-server.js';
import type { WorkerConfig } from './support/lease-worker.js';

const WORKER = fileURLToPath(new URL('./support/lease-worker.js', import.meta.url));
const KEY = 'leader';
const TTL = 400;
/** Scheduling slack for a handover on a loaded 2-core machine, beyond the ttl and a round trip. */
const SLACK = 350;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Run {
  readonly children: ChildProcess[];
  readonly logs: string[];
  /** The child whose contender holds the lease now (by the lease record's name); `long`: in a long hold. */
  holder(long?: boolean): Promise<ChildProcess | undefined>;
  /** Server-clock windows in which handovers are not bounded (a failover). */
  readonly excused: Array<[number, number]>;
  /** When the new primary was named (server clock): at least 8 tenures must begin after it. */
  failedOverAt?: number;
  serverNow(): Promise<number>;
}

async function contend(
  connection: Pick<WorkerConfig, 'url' | 'sentinel' | 'cluster' | 'timePort' | 'options'>,
  reader: RedisConsensus, faults: (run: Run) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'lease-'));
  const prefix = reader.prefix;
  const children: ChildProcess[] = [];
  const logs = Array.from({ length: 4 }, (_, worker) => join(dir, `worker-${worker}.log`));
  const time = new Redis({ host: '127.0.0.1', port: connection.timePort });
  const run: Run = {
    children, logs, excused: [],
    async holder(long = false) {
      // Between two tenures nobody holds it: ask again.
      for (let attempt = 0; attempt < 1000; attempt++) {
        const state = await reader.readLease(KEY).catch(() => null);
        const [worker, , hold] = state?.record?.name.split('/') ?? [];
        if (state?.held === true && (!long || hold === 'long')) return children[Number(worker)];
        await sleep(10);
      }
      return undefined;
    },
    async serverNow() {
      const [sec, usec] = await time.time();
      return Number(sec) * 1000 + Number(usec) / 1000;
    },
  };
  try {
    await Promise.all(logs.map((log, worker) => new Promise<void>((resolve, reject) => {
      const config: WorkerConfig = { worker, contenders: 4, key: KEY, prefix, ttlMs: TTL, holdMs: [15, 50], longHoldMs: TTL * 4, log, ...connection };
      const child = fork(WORKER, [JSON.stringify(config)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.push(child);
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`worker ${worker} exited (${code}) before it was ready`)));
    })));
    await faults(run);
  } finally {
    await Promise.all(children.map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        resolve();
        return;
      }
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill('SIGCONT');
      child.send('stop');
    })));
    time.disconnect();
  }
  try {
    check(logs, run.excused, run.failedOverAt);
  } finally {
    if (process.env.LEASE_KEEP_LOGS === undefined) rmSync(dir, { recursive: true, force: true });
    else console.log(`[lease] logs kept in ${dir}`);
  }
}

interface Tenure {
  token: bigint;
  owner: string;
  first: number;
  last: number;
  error: number;
}

/** How many tenures a run must have, and how many must begin after a failover. */
const MIN_TENURES = 8;

function check(logs: string[], excused: Array<[number, number]>, failedOverAt: number | undefined): void {
  const tenures = new Map<bigint, Tenure>();
  const acquisitions = new Map<string, number>();
  const waits: number[] = [];
  logs.forEach((file, worker) => {
    let error = Infinity;
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const [kind, a, b, c] = line.split(' ');
      if (kind === 'O') error = Number(b);
      if (kind === 'A') {
        acquisitions.set(`${worker}/${a}`, (acquisitions.get(`${worker}/${a}`) ?? 0) + 1);
        waits.push(Number(c));
      }
      if (kind === 'W') waits.push(Number(b));
      if (kind !== 'T') continue;
      const token = BigInt(b!);
      const at = Number(c);
      const owner = `${worker}/${a}`;
      const tenure = tenures.get(token);
      if (tenure === undefined) tenures.set(token, { token, owner, first: at, last: at, error });
      else {
        assert.is(tenure.owner, owner, `token ${token} acted on by two holders`);
        tenure.first = Math.min(tenure.first, at);
        tenure.last = Math.max(tenure.last, at);
      }
    }
  });
  const ordered = [...tenures.values()].sort((x, y) => (x.token < y.token ? -1 : 1));
  assert.ok(ordered.length >= MIN_TENURES, `only ${ordered.length} tenures`);
  const afterFailover = failedOverAt === undefined ? undefined : ordered.filter((tenure) => tenure.first > failedOverAt).length;
  if (afterFailover !== undefined) assert.ok(afterFailover >= MIN_TENURES, `only ${afterFailover} tenures after the failover`);
  let closest = Infinity;
  const gaps: number[] = [];
  for (let i = 1; i < ordered.length; i++) {
    const before = ordered[i - 1]!;
    const after = ordered[i]!;
    const gap = after.first - before.last;
    closest = Math.min(closest, gap);
    // Two holders never acted as owners at once: intervals in token order, apart by more than the
    // error of mapping each process's clock to the server's.
    assert.ok(gap > -(before.error + after.error),
      `tokens ${before.token} (${before.owner}, until ${before.last}) and ${after.token} (${after.owner}, from ${after.first}) overlap by ${-gap} ms`);
    if (!excused.some(([from, to]) => before.last < to && after.first > from)) gaps.push(gap);
  }
  const longest = Math.max(...gaps);
  assert.ok(longest <= TTL + SLACK, `a handover took ${longest} ms (ttl ${TTL} ms)`);
  // Every wait, finished or still going at the end, was bounded (a failover's outage added).
  const outage = excused.reduce((sum, [from, to]) => sum + (to - from), 0);
  assert.ok(Math.max(...waits) < 10_000 + outage, `a waiter waited ${Math.max(...waits)} ms`);
  const sorted = [...gaps].sort((x, y) => x - y);
  console.log(`[lease] ${ordered.length} tenures, tokens ${ordered[0]!.token}..${ordered.at(-1)!.token}; ` +
    `closest holders ${closest.toFixed(1)} ms apart; handover median ${sorted[sorted.length >> 1]!.toFixed(1)} ms, ` +
    `longest ${longest.toFixed(1)} ms; longest wait ${Math.max(...waits).toFixed(0)} ms; ` +
    `${acquisitions.size} contenders acquired it` + (afterFailover === undefined ? '' : `; ${afterFailover} tenures after the failover`));
}

/** SIGSTOPs the holder's process for longer than the ttl, then lets it go on. */
async function pauseHolder(run: Run): Promise<void> {
  const holder = await run.holder(true);
  assert.ok(holder !== undefined, 'someone holds the lease');
  holder.kill('SIGSTOP');
  console.log(`[lease] paused worker ${run.children.indexOf(holder)} at ${(await run.serverNow()).toFixed(1)}`);
  await sleep(TTL * 2 + 200);
  holder.kill('SIGCONT');
}

async function killHolder(run: Run): Promise<void> {
  const holder = await run.holder();
  assert.ok(holder !== undefined, 'someone holds the lease');
  holder.kill('SIGKILL');
}

const available = redisServerAvailable();
/** `LEASE_ONLY=redis|sentinel|cluster` runs one case only (each takes 10-30 s). */
const only = process.env.LEASE_ONLY;
const runs = (name: string): boolean => available && (only === undefined || only === '' || only === name);

if (runs('redis')) {
  const test = suite('lease: 16 contenders in 4 processes (Redis)');
  test('SIGSTOP past the ttl, CLIENT KILL, SIGKILL of the holder: never two owners, handovers within the ttl', async () => {
    const port = 7814;
    const servers = [await startServer(port)];
    const reader = await RedisConsensus.connect(`redis://127.0.0.1:${port}`, { prefix: freshPrefix('lease') });
    try {
      await contend({ url: `redis://127.0.0.1:${port}`, timePort: port }, reader, async (run) => {
        await sleep(1500);
        await pauseHolder(run);
        await sleep(1000);
        for (const type of ['normal', 'pubsub']) await command(port, 'CLIENT', 'KILL', 'TYPE', type);
        await sleep(1000);
        await killHolder(run);
        await sleep(1500);
      });
    } finally {
      await reader.close();
      await stopServers(servers);
    }
  });
  test.run();
}

if (runs('sentinel')) {
  const sentinel = suite('lease: 16 contenders in 4 processes (Sentinel failover)');
  sentinel('the primary crashes and Sentinel promotes a replica: never two owners, the lease taken again at once', async () => {
    const [primary, sentinelPort] = [7810, 7813];
    const replicas = [7811, 7812];
    const servers: RedisServer[] = [];
    const clients: Redis[] = [];
    try {
      servers.push(await startServer(primary));
      for (const port of replicas) servers.push(await startServer(port, ['--replicaof', '127.0.0.1', String(primary)]));
      await until('the replicas are in sync', 10_000, async () => {
        const info = infoFields(String(await command(primary, 'INFO', 'replication')));
        return [info.slave0, info.slave1].every((line) => line?.includes('state=online') === true);
      });
      // Down after 2 s: with 1 s, a primary stalled by the loaded machine was failed over a second time.
      servers.push(await startSentinel(sentinelPort, 'lease', primary, 2000));
      const client = new Redis({ sentinels: [{ host: '127.0.0.1', port: sentinelPort }], name: 'lease', ...SAFE_WRITE_OPTIONS });
      client.on('error', () => {});
      clients.push(client);
      // Durability: a renewal counts only once a replica has it, so a failover cannot roll the
      // lease back behind what its holder believes (docs/leases.md). Two replicas: the promoted one
      // leaves one to acknowledge (with one, every durable commit after the failover fell short).
      const options = { durability: { replicas: 1, timeoutMs: 300 } };
      const reader = new RedisConsensus(client, { prefix: freshPrefix('lease-sentinel') });
      await contend({ sentinel: { port: sentinelPort, name: 'lease' }, timePort: replicas[0]!, options }, reader, async (run) => {
        await sleep(1500);
        const crashed = await run.serverNow();
        await servers[0]!.crash();
        await until('Sentinel promotes a replica', 20_000, async () => {
          const [, port] = await command(sentinelPort, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'lease') as [string, string];
          return replicas.includes(Number(port));
        });
        const named = performance.now();
        run.failedOverAt = await run.serverNow();
        await until('the lease is held again', 10_000, async () => (await reader.readLease(KEY).catch(() => null))?.held === true);
        const retakenMs = performance.now() - named;
        console.log(`[lease] the lease was taken again ${retakenMs.toFixed(0)} ms after the new primary was named`);
        assert.ok(retakenMs <= TTL + SLACK + 1000, `the lease was taken again ${retakenMs.toFixed(0)} ms after the new primary was named`);
        run.excused.push([crashed, await run.serverNow()]);
        await sleep(6000);
      });
      await reader.close();
    } finally {
      for (const client of clients) client.disconnect();
      await stopServers(servers);
    }
  });
  sentinel.run();
}

if (runs('cluster')) {
  const cluster = suite('lease: 16 contenders in 4 processes (Cluster)');
  cluster('CLIENT KILL on every node and SIGKILL of the holder: never two owners', async () => {
    const ports = [7300, 7301, 7302];
    const servers: RedisServer[] = [];
    try {
      for (const [i, port] of ports.entries()) {
        servers.push(await startServer(port, [
          '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(7310 + i),
          '--cluster-node-timeout', '2000',
        ]));
      }
      const created = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`),
        '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 });
      assert.is(created.status, 0, created.stderr);
      await until('the cluster is ok', 20_000, async () => (await Promise.all(ports.map(async (port) =>
        infoFields(String(await command(port, 'CLUSTER', 'INFO'))).cluster_state === 'ok'))).every(Boolean));
      const nodes = ports.map((port) => ({ host: '127.0.0.1', port }));
      const reader = await RedisConsensus.connectCluster(nodes, { prefix: freshPrefix('lease-cluster') });
      await contend({ cluster: nodes, timePort: ports[0]! }, reader, async (run) => {
        await sleep(1500);
        for (const port of ports) {
          for (const type of ['normal', 'pubsub']) await command(port, 'CLIENT', 'KILL', 'TYPE', type);
        }
        await sleep(1000);
        await killHolder(run);
        await sleep(1500);
      });
      await reader.close();
    } finally {
      await stopServers(servers);
    }
  });
  cluster.run();
}
