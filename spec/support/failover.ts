/**
 * A Jepsen-style failover harness (issue #19): a Sentinel group (1 primary, 2 replicas, 3
 * Sentinels) or a Redis Cluster (3 primaries + 3 replicas, `failover-cluster.ts`) of servers this
 * process starts, client processes (separate `node` processes, `failover-worker.ts`, each running
 * several logical processes with a `RedisConsensus` and a client of their own) appending,
 * compare-and-setting and reading under a fault, every client operation recorded with its invoke
 * and complete time, and the merged history checked afterwards against what the store holds:
 *
 * - lost: acknowledged commits missing from the store, or stored with other bytes;
 * - two payloads: a (key, seqno) seen with two different payloads (acknowledged, read or stored);
 * - backward: a process that saw a key's head at one seqno and later read a lower one;
 * - detections: calls refused with `store-rollback` or `store-reset`, per process and bucket;
 * - unnamed: a process that saw a commit that is now gone (it wrote or read it) and got no
 *   detection in that bucket afterwards: a rewritten history accepted in silence.
 *
 * The faults hit the primary of the keys: SIGKILL, SIGSTOP for 4 s, and a partition. A partition
 * is real where network namespaces can be made (root; `netns.ts`): the primary runs in a namespace
 * of its own, with the client processes on its side, and its link to the host's bridge is cut.
 * Without root it is a loopback TCP proxy that the replicas, the Sentinels and the other processes
 * reach the primary through (Sentinel only); under REQUIRE_REDIS=1 missing namespaces fail instead.
 *
 * Used by spec/failover.test.ts (the short version in `npm test`) and scripts/failover.ts (the
 * matrix, `npm run failover`).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { RedisConsensus } from '../../lib/index.js';
import type { RedisConsensusOptions } from '../../lib/index.js';
import { keyNames } from '../../lib/layout.js';
import { commandAt, infoFields, stopServers, until } from './cluster.js';
import { FaultProxy } from './fault-proxy.js';
import type { Namespace, Partitioner } from './netns.js';
import { RedisServer } from './redis-server.js';

const LOOPBACK = '127.0.0.1';
export const MASTER_NAME = 'rcf';

/** Where a server or Sentinel is reached. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** How a client process reaches the store: through Sentinel, as a Cluster client, or one server directly. */
export type Target = { sentinels: Endpoint[]; name: string } | { cluster: Endpoint[] } | { direct: Endpoint };

/** What a partition cuts off: the first primary, and the client processes run with `exec`. */
export interface Partition {
  /** How it is made: a network namespace, or the loopback proxy (no root). */
  readonly kind: 'netns' | 'proxy';
  /** The argv prefix that runs a client process on the primary's side (`ip netns exec ...`; none with the proxy). */
  readonly exec: readonly string[];
  cut(): void;
  heal(): void;
}

/** A replicated setup under test: a Sentinel group or a Cluster. */
export interface FailoverSetup {
  readonly name: 'Sentinel' | 'Cluster';
  /** The keys the processes use: all served by `victim` at first. */
  readonly keys: readonly string[];
  /** How the client processes reach the store. */
  readonly target: Target;
  /** How client processes on the primary's side of a partition reach it. */
  readonly sideTarget: Target;
  /** The first primary of the keys: the fault hits it. */
  readonly victim: RedisServer;
  /** Set when the setup was started partitionable. */
  readonly partition: Partition | undefined;
  /** The primary of the keys now, as the Sentinels or the rest of the Cluster name it. */
  primary(): Promise<Endpoint>;
  /** A store on the setup as it is now (the caller closes it). */
  connect(prefix: string): Promise<RedisConsensus>;
  stop(): Promise<void>;
}

/** The setup as a proxy-partitioned Sentinel group, or a namespaced one, or neither (no partition). */
export type Partitioning = Partitioner | 'proxy' | undefined;

/**
 * Starts a Sentinel group: a primary on `base`, replicas on `base + 1`, `base + 2`, and 3 Sentinels
 * on `base + 10..12` (quorum 2, down-after 1000 ms). `serverArgs` go to the three data servers
 * (e.g. `--min-replicas-to-write 1`). With a `Partitioner` the primary runs in a network namespace
 * of its own and everything else on the host's bridge address; with `'proxy'` the replicas and
 * Sentinels reach the primary through a TCP proxy on `base + 3`.
 */
export async function startSentinelGroup(base: number, serverArgs: string[] = [], partitioning: Partitioning = undefined): Promise<FailoverSetup> {
  const servers: RedisServer[] = [];
  const sentinels: RedisServer[] = [];
  let proxy: FaultProxy | undefined;
  let namespace: Namespace | undefined;
  const stop = async (): Promise<void> => {
    proxy?.heal();
    await proxy?.close();
    await stopServers([...sentinels, ...servers]);
    namespace?.remove();
  };
  try {
    const netns = typeof partitioning === 'object' ? partitioning : undefined;
    namespace = netns?.namespace();
    const host = netns?.hostAddress ?? LOOPBACK;
    servers.push(await RedisServer.start({
      port: base, host: namespace?.address, launcher: namespace?.exec,
      args: ['--repl-diskless-sync-delay', '0', ...serverArgs],
    }));
    const victim = servers[0]!;
    // With the proxy, everyone but the processes on its side reaches the primary on base + 3.
    if (partitioning === 'proxy') proxy = await FaultProxy.start(base + 3, { port: base });
    const primaryAddress: Endpoint = { host: victim.host, port: proxy === undefined ? base : base + 3 };
    for (const i of [1, 2]) {
      servers.push(await RedisServer.start({
        port: base + i, host,
        args: ['--repl-diskless-sync-delay', '0', ...serverArgs, '--replicaof', primaryAddress.host, String(primaryAddress.port)],
      }));
    }
    await until('the replicas are in sync', 15_000, async () => {
      const info = infoFields(String(await commandAt(victim.host, base, 'INFO', 'replication')));
      return Number(info.connected_slaves) === 2 && [info.slave0, info.slave1].every((line) => line?.includes('state=online'));
    });
    for (const i of [10, 11, 12]) {
      sentinels.push(await RedisServer.start({
        port: base + i, host,
        args: ['--sentinel'],
        config: [
          `sentinel monitor ${MASTER_NAME} ${primaryAddress.host} ${primaryAddress.port} 2`,
          `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
          `sentinel failover-timeout ${MASTER_NAME} 5000`,
          `sentinel parallel-syncs ${MASTER_NAME} 2`,
          '',
        ].join('\n'),
      }));
    }
    await until('the Sentinels see each other and the replicas', 15_000, async () => {
      const masters = await Promise.all(sentinels.map(async (sentinel) => {
        const fields = await commandAt(LOOPBACK, sentinel.port, 'SENTINEL', 'MASTER', MASTER_NAME) as string[];
        const map = new Map<string, string>();
        for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!);
        return map;
      }));
      return masters.every((map) => Number(map.get('num-other-sentinels')) === 2 && Number(map.get('num-slaves')) === 2);
    });
    const primary = async (): Promise<Endpoint> => {
      for (const sentinel of sentinels) {
        try {
          const [at, port] = await commandAt(LOOPBACK, sentinel.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME) as [string, string];
          // The proxy stands for the first primary.
          return Number(port) === primaryAddress.port ? { host: victim.host, port: base } : { host: at, port: Number(port) };
        } catch {
          // Ask the next one.
        }
      }
      throw new Error('no Sentinel answered');
    };
    const cut = namespace ?? proxy;
    return {
      name: 'Sentinel', keys: SENTINEL_KEYS, victim, stop, primary,
      target: { sentinels: sentinels.map((sentinel) => ({ host: LOOPBACK, port: sentinel.port })), name: MASTER_NAME },
      // In a namespace, Sentinel clients too (the Sentinels are on the host's bridge address): they
      // stay with the primary while cut off, and follow Sentinel to the new one after the heal.
      sideTarget: namespace === undefined
        ? { direct: { host: victim.host, port: base } }
        : { sentinels: sentinels.map((sentinel) => ({ host, port: sentinel.port })), name: MASTER_NAME },
      partition: cut === undefined ? undefined : {
        kind: namespace === undefined ? 'proxy' : 'netns',
        exec: namespace?.exec ?? [],
        cut: () => namespace === undefined ? proxy!.partition() : namespace.cut(),
        heal: () => namespace === undefined ? proxy!.heal() : namespace.heal(),
      },
      connect: async (prefix) => RedisConsensus.connect(url(await primary()), { prefix }),
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** One client operation, as recorded. */
export interface Op {
  readonly process: number;
  readonly kind: 'append' | 'cas' | 'head';
  readonly key: string;
  /** Invoked and completed: ms since the epoch, `performance.timeOrigin + performance.now()` (shared by all processes). */
  readonly start: number;
  readonly end: number;
  /** A commit acknowledged, or a head read (null: no data). */
  readonly version?: { seqno: bigint; data: string } | null;
  /** A compare-and-set that mismatched, an append whose update stopped. */
  readonly committed?: boolean;
  readonly error?: { code: string; determinate: boolean };
}

/** An `Op` as a worker prints it (one JSON line; the seqno as a string). */
export type OpLine = Omit<Op, 'version'> & { version?: { seqno: string; data: string } | null };

/** A group of processes doing the same thing on the same keys. */
export interface Role {
  readonly name: string;
  readonly kind: 'append' | 'cas' | 'head';
  readonly processes: number;
  readonly keys: readonly string[];
  readonly options?: RedisConsensusOptions;
  /** Run on the first primary's side of a partition (in its namespace; with the proxy: connected to it directly). */
  readonly primarySide?: boolean;
}

/** One logical process of a worker. */
export interface WorkerProcess {
  readonly id: number;
  readonly role: Role;
}

/** What a worker process is told (its argv[2], as JSON). */
export interface WorkerConfig {
  readonly prefix: string;
  readonly target: Target;
  readonly processes: WorkerProcess[];
}

/** A running workload: its history so far, and how to stop it. */
export interface Run {
  readonly history: Op[];
  /** Process number → its role's name. */
  readonly roles: Map<number, string>;
  stop(): Promise<void>;
}

/** The shared clock: ms since the epoch, sub-ms, monotonic within a process. */
export const now = (): number => performance.timeOrigin + performance.now();

const WORKER = fileURLToPath(new URL('./failover-worker.js', import.meta.url));

/**
 * Starts every role's processes on `setup`: those reaching it through Sentinel or the Cluster in
 * two worker processes on the host, the `primarySide` ones in a third, on the primary's side of the
 * partition (inside its namespace).
 */
export function startWorkload(setup: FailoverSetup, prefix: string, roles: readonly Role[]): Run {
  const history: Op[] = [];
  const names = new Map<number, string>();
  const host: WorkerProcess[][] = [[], []];
  const side: WorkerProcess[] = [];
  let next = 0;
  for (const role of roles) {
    for (let p = 0; p < role.processes; p++) {
      const id = next++;
      names.set(id, role.name);
      if (role.primarySide === true) side.push({ id, role });
      else host[id % 2]!.push({ id, role });
    }
  }
  const children: { child: ChildProcess; exited: Promise<void>; stderr: () => string }[] = [];
  const start = (config: WorkerConfig, exec: readonly string[]): void => {
    const [program, ...args] = [...exec, process.execPath, WORKER, JSON.stringify(config)];
    const child = spawn(program!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    let partial = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    child.stdout!.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        const op = JSON.parse(line) as OpLine;
        history.push({ ...op, version: op.version ? { seqno: BigInt(op.version.seqno), data: op.version.data } : op.version });
      }
    });
    const exited = new Promise<void>((resolve) => child.once('exit', (code, signal) => {
      if (code !== 0 && signal !== 'SIGKILL') console.error(`[failover] a worker exited with ${code ?? signal}:\n${stderr}`);
      resolve();
    }));
    children.push({ child, exited, stderr: () => stderr });
  };
  for (const processes of host) if (processes.length > 0) start({ prefix, target: setup.target, processes }, []);
  if (side.length > 0) start({ prefix, target: setup.sideTarget, processes: side }, setup.partition?.exec ?? []);
  let stopped: Promise<void> | undefined;
  return {
    history, roles: names,
    stop() {
      stopped ??= (async () => {
        for (const { child } of children) child.stdin!.end();
        const timer = setTimeout(() => {
          for (const { child } of children) child.kill('SIGKILL');
        }, 20_000);
        await Promise.all(children.map(({ exited }) => exited));
        clearTimeout(timer);
      })();
      return stopped;
    },
  };
}

/** What the store holds: key → seqno → payload, read raw from the primary at `at`. */
export async function readStore(at: Endpoint, prefix: string, keys: readonly string[]): Promise<Map<string, Map<bigint, string>>> {
  const raw = new Redis({ ...at });
  try {
    const stored = new Map<string, Map<bigint, string>>();
    for (const key of keys) {
      const names = keyNames(prefix, key);
      const seqnos = await raw.zrange(names.versions, 0, -1);
      const payloads = seqnos.length === 0 ? [] : await raw.hmget(names.data, ...seqnos);
      stored.set(key, new Map(seqnos.map((seqno, i) => [BigInt(seqno), payloads[i] ?? '<missing>'])));
    }
    return stored;
  } finally {
    raw.disconnect();
  }
}

/** The checks of a history, by role where it matters. */
export interface Findings {
  /** Acknowledged commits per role. */
  readonly acknowledged: Map<string, number>;
  /** Acknowledged commits lost per role (missing, or stored with other bytes), with examples. */
  readonly lost: Map<string, string[]>;
  /** (key, seqno) seen with two payloads. */
  readonly twoPayloads: string[];
  /** Heads read lower than one the same process had seen before. */
  readonly backward: string[];
  /** Calls refused with store-rollback / store-reset, and by how many of all the processes. */
  readonly detections: { rollback: number; reset: number; processes: number; of: number };
  /** Processes that saw a commit now gone and were never refused in its bucket afterwards. */
  readonly unnamed: string[];
  /** Errors by code (and kind). */
  readonly errors: Map<string, number>;
  /** Time from the fault to the first commit acknowledged after it that the store kept, in ms (NaN: none). */
  readonly recoveryMs: number;
  /** Time from the fault until the old primary was made a replica, in ms (set by runScenario). */
  splitBrainMs: number;
  /** Whether every key took an append after acknowledgeStoreReset (set by runScenario). */
  afterAcknowledgement: boolean;
}

/** Checks `run`'s history against `stored`; `faultAt` is when the fault began (performance.now()). */
export function check(run: Run, stored: Map<string, Map<bigint, string>>, prefix: string, faultAt: number): Findings {
  const acknowledged = new Map<string, number>();
  const lost = new Map<string, string[]>();
  const payloads = new Map<string, Set<string>>();
  const seen = (key: string, seqno: bigint, data: string): void => {
    const id = `${key}@${seqno}`;
    if (!payloads.has(id)) payloads.set(id, new Set());
    payloads.get(id)!.add(data);
  };
  for (const [key, versions] of stored) for (const [seqno, data] of versions) seen(key, seqno, data);
  const errors = new Map<string, number>();
  const backward: string[] = [];
  const lastSeen = new Map<string, bigint>();
  let rollback = 0;
  let reset = 0;
  const detectingProcesses = new Set<number>();
  let recoveryMs = Number.NaN;
  const ordered = [...run.history].sort((a, b) => a.end - b.end);
  for (const op of ordered) {
    const role = run.roles.get(op.process)!;
    if (op.error !== undefined) {
      const name = `${op.kind} ${op.error.code} (${op.error.determinate ? 'determinate' : 'indeterminate'})`;
      errors.set(name, (errors.get(name) ?? 0) + 1);
      if (op.error.code === 'store-rollback' || op.error.code === 'store-reset') {
        if (op.error.code === 'store-rollback') rollback++;
        else reset++;
        detectingProcesses.add(op.process);
      }
      continue;
    }
    if (op.version === undefined) continue;
    if (op.version === null) {
      if (lastSeen.has(`${op.process}/${op.key}`)) backward.push(`process ${op.process} (${role}) read ${op.key} empty after seqno ${lastSeen.get(`${op.process}/${op.key}`)}`);
      continue;
    }
    const { seqno, data } = op.version;
    seen(op.key, seqno, data);
    const last = lastSeen.get(`${op.process}/${op.key}`);
    if (op.kind === 'head' && last !== undefined && seqno < last) {
      backward.push(`process ${op.process} (${role}) read ${op.key} at ${seqno} after ${last}`);
    }
    if (last === undefined || seqno > last) lastSeen.set(`${op.process}/${op.key}`, seqno);
    if (op.kind !== 'head') {
      acknowledged.set(role, (acknowledged.get(role) ?? 0) + 1);
      const survived = stored.get(op.key)?.get(seqno) === data;
      // Recovered: the first commit acknowledged after the fault that the store kept.
      if (survived && op.start > faultAt && (Number.isNaN(recoveryMs) || op.end - faultAt < recoveryMs)) recoveryMs = op.end - faultAt;
      if (!survived) {
        if (!lost.has(role)) lost.set(role, []);
        lost.get(role)!.push(`${op.key}@${seqno} ${data} (stored: ${stored.get(op.key)?.get(seqno) ?? 'nothing'})`);
      }
    }
  }
  // A process that saw a version now gone (wrote or read it) must not succeed in its bucket again
  // (a read, a commit) unless it was refused there in between: that would be the rewritten
  // history accepted in silence. (A process that only fails afterwards, e.g. connected to a
  // demoted primary, accepts nothing.)
  const unnamed = new Set<string>();
  const sawLost = new Map<string, { at: number; what: string }>();
  for (const op of ordered) {
    const id = `${op.process}/${keyNames(prefix, op.key).bucket}`;
    if (op.error !== undefined) {
      if (op.error.code === 'store-rollback' || op.error.code === 'store-reset') sawLost.delete(id);
      continue;
    }
    if (op.version === undefined) continue;
    // What the op saw or wrote is on the surviving history (or a key now empty read empty).
    const survives = op.version === null
      ? (stored.get(op.key)?.size ?? 0) === 0
      : stored.get(op.key)?.get(op.version.seqno) === op.version.data;
    const lostSeen = sawLost.get(id);
    if (lostSeen !== undefined && op.start > lostSeen.at && survives) {
      unnamed.add(`process ${op.process} (${run.roles.get(op.process)}) saw ${lostSeen.what}, now gone, and then ` +
        `${op.kind} ${op.key} succeeded without a refusal`);
      sawLost.delete(id);
    }
    if (op.version === null || survives) continue;
    if (!sawLost.has(id)) sawLost.set(id, { at: op.end, what: `${op.key}@${op.version.seqno} ${op.version.data}` });
  }
  const twoPayloads = [...payloads].filter(([, set]) => set.size > 1).map(([id, set]) => `${id}: ${[...set].join(' / ')}`);
  return {
    acknowledged, lost, twoPayloads, backward, errors, recoveryMs, splitBrainMs: Number.NaN, afterAcknowledgement: false,
    detections: { rollback, reset, processes: detectingProcesses.size, of: run.roles.size },
    unnamed: [...unnamed],
  };
}

/** Prints what a run found, in the shape of docs/deployment.md's table. */
export function describeFindings(label: string, findings: Findings): string {
  const by = (map: Map<string, number | string[]>): string =>
    [...map].map(([name, value]) => `${name} ${Array.isArray(value) ? value.length : value}`).join(', ') || 'none';
  return [
    `[failover] ${label}: recovery ${Math.round(findings.recoveryMs)} ms, split brain ${Math.round(findings.splitBrainMs)} ms`,
    `  acknowledged: ${by(findings.acknowledged)}`,
    `  LOST acknowledged: ${by(findings.lost)} ${JSON.stringify([...findings.lost.values()].flat().slice(0, 4))}`,
    `  seqnos with two payloads: ${findings.twoPayloads.length} ${JSON.stringify(findings.twoPayloads.slice(0, 3))}`,
    `  backward reads: ${findings.backward.length} ${JSON.stringify(findings.backward.slice(0, 3))}`,
    `  detections: ${findings.detections.rollback} store-rollback, ${findings.detections.reset} store-reset, ` +
      `in ${findings.detections.processes} of ${findings.detections.of} processes`,
    `  unnamed (saw a lost commit, never refused after): ${findings.unnamed.length} ${JSON.stringify(findings.unnamed.slice(0, 3))}`,
    `  errors: ${by(findings.errors)}`,
  ].join('\n');
}

/** The keys of a Sentinel run: 4 for durable writers, 4 for plain ones. */
export const SENTINEL_KEYS = ['d0', 'd1', 'd2', 'd3', 'p0', 'p1', 'p2', 'p3'];

/**
 * The roles of a run on `keys` (4 for durable writers, then 4 for plain ones): durable and plain
 * writers (append and head -> compareAndSet), and readers of every key.
 */
export function failoverRoles(durable: Role['options'], keys: readonly string[]): Role[] {
  const [d0, d1, d2, d3, p0, p1, p2, p3] = keys as [string, string, string, string, string, string, string, string];
  return [
    { name: 'append durable', kind: 'append', processes: 2, keys: [d0, d1], options: durable },
    { name: 'cas durable', kind: 'cas', processes: 2, keys: [d2, d3], options: durable },
    { name: 'append plain', kind: 'append', processes: 2, keys: [p0, p1] },
    { name: 'cas plain', kind: 'cas', processes: 2, keys: [p2, p3] },
    { name: 'reader', kind: 'head', processes: 2, keys },
  ];
}

/**
 * Commits seqno 0 of every key and waits until every replica of the primary has it: a failover
 * that loses a bucket's first commit loses its epoch marker, and reads as a reset there
 * (docs/deployment.md).
 */
export async function firstCommits(setup: FailoverSetup, prefix: string): Promise<void> {
  const setupStore = await setup.connect(prefix);
  try {
    for (const key of setup.keys) await setupStore.compareAndSet(key, null, { seqno: 0n, data: bytes('first') });
  } finally {
    await setupStore.close();
  }
  const { host, port } = await setup.primary();
  await until('the replicas have every first commit', 10_000, async () => {
    const info = infoFields(String(await commandAt(host, port, 'INFO', 'replication')));
    const offsets = Object.entries(info).filter(([name]) => /^slave\d+$/.test(name))
      .map(([, line]) => Number(/offset=(\d+)/.exec(line)?.[1]));
    return offsets.length > 0 && offsets.every((offset) => offset >= Number(info.master_repl_offset));
  });
}

/**
 * Waits until every process has finished two calls begun after `from` (the clients have all moved
 * to the new primary: each either writes again or is refused), then one second more.
 */
export async function settle(run: Run, from: number, timeoutMs = 20_000): Promise<void> {
  await until('every process made calls on the new primary', timeoutMs, async () => {
    const calls = new Map<number, number>();
    for (const op of run.history) if (op.start > from) calls.set(op.process, (calls.get(op.process) ?? 0) + 1);
    return [...run.roles.keys()].every((process) => (calls.get(process) ?? 0) >= 2);
  });
  await new Promise((resolve) => setTimeout(resolve, 1000));
}

/** Acknowledges the rollbacks, and checks that every key takes appends again. */
export async function afterAcknowledgement(setup: FailoverSetup, prefix: string): Promise<boolean> {
  const store = await setup.connect(prefix);
  try {
    await store.acknowledgeStoreReset();
    for (const key of setup.keys) if (!(await store.append(key, () => bytes('after ack'))).committed) return false;
    return true;
  } finally {
    await store.close();
  }
}

const url = ({ host, port }: Endpoint): string => `redis://${host}:${port}`;
const bytes = (text: string): Buffer => Buffer.from(text, 'utf8');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The faults: SIGKILL (on Sentinel the primary gone for good; on Cluster restarted, empty, once
 * its replica is promoted, so that the new primary has a replica again), SIGSTOP for 4 s (then resumed), a partition
 * (then healed 3 s after the failover) between the primary, with the processes connected to it
 * directly, and everything else (setup started partitionable).
 */
export type Fault = 'sigkill' | 'sigstop' | 'partition';

/** The durability the durable roles use. */
export const DURABLE: RedisConsensusOptions = { durability: { replicas: 1, timeoutMs: 500 } };

/**
 * One run: first commits replicated, the roles of `failoverRoles` under load (each process under
 * way), the fault on the primary, until another primary is named and the old primary (if resumed
 * or healed) is made a replica, until every process has made calls since, then the history checked
 * against the new primary's data, and the rollbacks acknowledged.
 */
export async function runScenario(setup: FailoverSetup, fault: Fault): Promise<Findings> {
  const prefix = `rcf-${fault}-${process.pid}-${Date.now().toString(36)}`;
  await firstCommits(setup, prefix);
  const roles = failoverRoles(DURABLE, setup.keys);
  // On the primary's side of a partition: a plain and a durable compare-and-set writer; after the
  // heal they reach the new primary, and must be refused in the buckets whose commits they saw lost.
  if (fault === 'partition') {
    if (setup.partition === undefined) throw new Error('a partition needs a setup started partitionable');
    roles.push({ name: 'cas plain', kind: 'cas', processes: 1, keys: setup.keys.slice(6), primarySide: true });
    roles.push({ name: 'cas durable', kind: 'cas', processes: 1, keys: setup.keys.slice(2, 4), primarySide: true, options: DURABLE });
  }
  const run = startWorkload(setup, prefix, roles);
  try {
    await settle(run, 0, 30_000);
    const victim = setup.victim;
    const moved = async (): Promise<boolean> => (await setup.primary()).port !== victim.port;
    if (fault === 'sigkill') await victim.crash();
    else if (fault === 'sigstop') victim.pause();
    else setup.partition!.cut();
    // Taken once the fault is in place: a call begun while `ip link set down` ran could still commit and replicate.
    const faultAt = now();
    if (fault === 'sigstop') {
      await sleep(4000);
      victim.resume();
    }
    if (fault === 'partition') {
      await until('another primary is named', 30_000, moved);
      await sleep(3000);
      setup.partition!.heal();
    }
    await until('another primary is named', 30_000, moved);
    // A Cluster primary has one replica: the promoted one has none until the dead node comes back
    // (as its replica), and with min-replicas-to-write 1 refuses every write until then.
    if (fault === 'sigkill' && setup.name === 'Cluster') await victim.start();
    // Until then, clients still connected to a resumed old primary go on writing there (split brain).
    if (fault !== 'sigkill' || setup.name === 'Cluster') {
      await until('the old primary is made a replica', 30_000, async () =>
        infoFields(String(await commandAt(victim.host, victim.port, 'INFO', 'replication'))).role === 'slave');
    }
    const splitBrainMs = now() - faultAt;
    await settle(run, now());
    await run.stop();
    // With min-replicas-to-write 1 the acknowledgement below is a write too: it needs a replica in sync.
    const promoted = await setup.primary();
    await until('the new primary has a replica in sync', 30_000, async () =>
      (infoFields(String(await commandAt(promoted.host, promoted.port, 'INFO', 'replication'))).slave0 ?? '').includes('state=online'));
    const stored = await readStore(promoted, prefix, setup.keys);
    const findings = check(run, stored, prefix, faultAt);
    findings.splitBrainMs = splitBrainMs;
    findings.afterAcknowledgement = await afterAcknowledgement(setup, prefix);
    return findings;
  } finally {
    await run.stop();
  }
}
