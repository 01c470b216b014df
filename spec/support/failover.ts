/**
 * A Jepsen-style failover harness (issue #19): a Sentinel group (1 primary, 2 replicas, 3
 * Sentinels) of servers this process starts, processes (each a `RedisConsensus` with a client of its
 * own, as separate workers would be) appending, compare-and-setting and reading under a fault,
 * every client operation recorded, and the history checked afterwards against what the store holds:
 *
 * - lost: acknowledged commits missing from the store, or stored with other bytes;
 * - two payloads: a (key, seqno) seen with two different payloads (acknowledged, read or stored);
 * - backward: a process that saw a key's head at one seqno and later read a lower one;
 * - detections: calls refused with `store-rollback` or `store-reset`, per process and bucket;
 * - unnamed: a process that saw a commit that is now gone (it wrote or read it) and got no
 *   detection in that bucket afterwards: a rewritten history accepted in silence.
 *
 * Used by spec/failover.test.ts (the short version in `npm test`) and scripts/failover.ts (the
 * matrix, `npm run failover`).
 */
import { Redis } from 'ioredis';
import { ExternalError, RedisConsensus } from '../../lib/index.js';
import type { RedisConsensusOptions } from '../../lib/index.js';
import { SAFE_WRITE_OPTIONS } from '../../lib/client.js';
import { keyNames } from '../../lib/layout.js';
import { command, infoFields, startServer, stopServers, until } from './cluster.js';
import { FaultProxy } from './fault-proxy.js';
import { RedisServer } from './redis-server.js';

const HOST = '127.0.0.1';
export const MASTER_NAME = 'rcf';

/** A Sentinel group of ours: servers[0] is the first primary. */
export interface SentinelGroup {
  readonly servers: RedisServer[];
  readonly sentinels: RedisServer[];
  /**
   * With `partitionable`: the proxy every replica and Sentinel (and every Sentinel client) reaches
   * the first primary through; cutting it partitions the primary from all of them, but not from
   * clients connected to it directly.
   */
  readonly proxy: FaultProxy | undefined;
  /** The port of the primary the Sentinels name now. */
  primaryPort(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Starts a primary on `base`, replicas on `base + 1`, `base + 2`, and 3 Sentinels on `base + 10..12`
 * (quorum 2, down-after 1000 ms). `serverArgs` go to the three data servers (e.g.
 * `--min-replicas-to-write 1`).
 */
export async function startSentinelGroup(base: number, serverArgs: string[] = [], partitionable = false): Promise<SentinelGroup> {
  const servers: RedisServer[] = [];
  const sentinels: RedisServer[] = [];
  let proxy: FaultProxy | undefined;
  const stop = async (): Promise<void> => {
    proxy?.heal();
    await proxy?.close();
    await stopServers([...sentinels, ...servers]);
  };
  try {
    servers.push(await startServer(base, serverArgs));
    // Seen through the proxy on base + 3 by everyone but the clients connected to it directly.
    if (partitionable) proxy = await FaultProxy.start(base + 3, { port: base });
    const primaryAddress = partitionable ? base + 3 : base;
    for (const i of [1, 2]) servers.push(await startServer(base + i, [...serverArgs, '--replicaof', HOST, String(primaryAddress)]));
    await until('the replicas are in sync', 15_000, async () => {
      const info = infoFields(String(await command(base, 'INFO', 'replication')));
      return Number(info.connected_slaves) === 2 && [info.slave0, info.slave1].every((line) => line?.includes('state=online'));
    });
    for (const i of [10, 11, 12]) {
      sentinels.push(await RedisServer.start({
        port: base + i,
        args: ['--sentinel'],
        config: [
          `sentinel monitor ${MASTER_NAME} ${HOST} ${primaryAddress} 2`,
          `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
          `sentinel failover-timeout ${MASTER_NAME} 5000`,
          `sentinel parallel-syncs ${MASTER_NAME} 2`,
          '',
        ].join('\n'),
      }));
    }
    await until('the Sentinels see each other and the replicas', 15_000, async () => {
      const masters = await Promise.all(sentinels.map(async (sentinel) => {
        const fields = await command(sentinel.port, 'SENTINEL', 'MASTER', MASTER_NAME) as string[];
        const map = new Map<string, string>();
        for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!);
        return map;
      }));
      return masters.every((map) => Number(map.get('num-other-sentinels')) === 2 && Number(map.get('num-slaves')) === 2);
    });
    return {
      servers, sentinels, stop, proxy,
      async primaryPort() {
        for (const sentinel of sentinels) {
          try {
            const [, port] = await command(sentinel.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME) as [string, string];
            return Number(port);
          } catch {
            // Ask the next one.
          }
        }
        throw new Error('no Sentinel answered');
      },
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
  readonly start: number;
  readonly end: number;
  /** A commit acknowledged, or a head read (null: no data). */
  readonly version?: { seqno: bigint; data: string } | null;
  /** A compare-and-set that mismatched, an append whose update stopped. */
  readonly committed?: boolean;
  readonly error?: { code: string; determinate: boolean };
}

/** A group of processes doing the same thing on the same keys. */
export interface Role {
  readonly name: string;
  readonly kind: 'append' | 'cas' | 'head';
  readonly processes: number;
  readonly keys: readonly string[];
  readonly options?: RedisConsensusOptions;
  /** Connected to the first primary directly, not through Sentinel: on its side of a partition. */
  readonly direct?: boolean;
}

/** A running workload: its history so far, and how to stop it. */
export interface Run {
  readonly history: Op[];
  /** Process number → its role's name. */
  readonly roles: Map<number, string>;
  stop(): Promise<void>;
}

/** Starts every role's processes on `group`, each with a Sentinel client of its own. */
export function startWorkload(group: SentinelGroup, prefix: string, roles: readonly Role[]): Run {
  const history: Op[] = [];
  const names = new Map<number, string>();
  const clients: Redis[] = [];
  const stores: RedisConsensus[] = [];
  let stopping = false;
  const loops: Promise<void>[] = [];
  let next = 0;
  for (const role of roles) {
    for (let p = 0; p < role.processes; p++) {
      const process = next++;
      names.set(process, role.name);
      const client = role.direct === true
        ? new Redis({ host: HOST, port: group.servers[0]!.port, ...SAFE_WRITE_OPTIONS })
        : new Redis({
          sentinels: group.sentinels.map((sentinel) => ({ host: HOST, port: sentinel.port })), name: MASTER_NAME,
          ...SAFE_WRITE_OPTIONS,
        });
      client.on('error', () => {});
      clients.push(client);
      const store = new RedisConsensus(client, { prefix, timeoutMs: 1000, ...role.options });
      stores.push(store);
      loops.push(work(store, process, role));
    }
  }

  async function work(store: RedisConsensus, process: number, role: Role): Promise<void> {
    for (let step = 0; !stopping; step++) {
      const key = role.keys[(process + step) % role.keys.length]!;
      const start = performance.now();
      const record = (op: Omit<Op, 'process' | 'kind' | 'key' | 'start' | 'end'>, kind: Op['kind'] = role.kind, begun = start): void => {
        history.push({ process, kind, key, start: begun, end: performance.now(), ...op });
      };
      try {
        if (role.kind === 'append') {
          const data = `p${process}-${step}`;
          const result = await store.append(key, () => Buffer.from(data), { timeoutMs: 3000 });
          record({ committed: result.committed, version: result.committed ? { seqno: result.head.seqno, data } : undefined });
        } else if (role.kind === 'cas') {
          const head = await store.head(key);
          record({ version: head === null ? null : { seqno: head.seqno, data: head.data.toString() } }, 'head');
          const data = `p${process}-${step}`;
          const seqno = head === null ? 0n : head.seqno + 1n;
          const begun = performance.now();
          const result = await store.compareAndSet(key, head?.seqno ?? null, { seqno, data: Buffer.from(data) });
          record({ committed: result === 'Committed', version: result === 'Committed' ? { seqno, data } : undefined }, 'cas', begun);
        } else {
          const head = await store.head(key);
          record({ version: head === null ? null : { seqno: head.seqno, data: head.data.toString() } });
        }
      } catch (err) {
        const external = err instanceof ExternalError ? err : undefined;
        record({ error: { code: external?.code ?? String(err), determinate: external?.determinate ?? true } });
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }

  return {
    history, roles: names,
    async stop() {
      stopping = true;
      await Promise.all(loops);
      await Promise.all(stores.map((store) => store.close().catch(() => undefined)));
      for (const client of clients) client.disconnect();
    },
  };
}

/** What the store holds: key → seqno → payload, read raw from the primary on `port`. */
export async function readStore(port: number, prefix: string, keys: readonly string[]): Promise<Map<string, Map<bigint, string>>> {
  const raw = new Redis({ host: HOST, port });
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

/** The roles of a run: durable and plain writers (append and head -> compareAndSet), and readers. */
export function failoverRoles(durable: Role['options']): Role[] {
  return [
    { name: 'append durable', kind: 'append', processes: 2, keys: ['d0', 'd1'], options: durable },
    { name: 'cas durable', kind: 'cas', processes: 2, keys: ['d2', 'd3'], options: durable },
    { name: 'append plain', kind: 'append', processes: 2, keys: ['p0', 'p1'] },
    { name: 'cas plain', kind: 'cas', processes: 2, keys: ['p2', 'p3'] },
    { name: 'reader', kind: 'head', processes: 2, keys: ['d0', 'd1', 'd2', 'd3', 'p0', 'p1', 'p2', 'p3'] },
  ];
}

export const FAILOVER_KEYS = ['d0', 'd1', 'd2', 'd3', 'p0', 'p1', 'p2', 'p3'];

/**
 * Commits seqno 0 of every key and waits until both replicas have it: a failover that loses a
 * bucket's first commit loses its epoch marker, and reads as a reset there (docs/deployment.md).
 */
export async function firstCommits(group: SentinelGroup, prefix: string): Promise<void> {
  const port = await group.primaryPort();
  const setup = await RedisConsensus.connect(url(port), { prefix });
  try {
    for (const key of FAILOVER_KEYS) await setup.compareAndSet(key, null, { seqno: 0n, data: bytes('first') });
  } finally {
    await setup.close();
  }
  const offset = Number(infoFields(String(await command(port, 'INFO', 'replication'))).master_repl_offset);
  await until('the replicas have every first commit', 10_000, async () => {
    const offsets = await Promise.all(group.servers.filter((server) => server.port !== port).map(async (server) =>
      Number(infoFields(String(await command(server.port, 'INFO', 'replication'))).master_repl_offset)));
    return offsets.every((replicated) => replicated >= offset);
  });
}

/**
 * Waits until every process has finished two calls begun after `from` (the clients have all moved
 * to the new primary: each either writes again or is refused), then one second more.
 */
export async function settle(run: Run, from: number): Promise<void> {
  await until('every process made calls on the new primary', 20_000, async () => {
    const calls = new Map<number, number>();
    for (const op of run.history) if (op.start > from) calls.set(op.process, (calls.get(op.process) ?? 0) + 1);
    return [...run.roles.keys()].every((process) => (calls.get(process) ?? 0) >= 2);
  });
  await new Promise((resolve) => setTimeout(resolve, 1000));
}

/** Acknowledges the rollbacks, and checks that every key takes appends again. */
export async function afterAcknowledgement(group: SentinelGroup, prefix: string): Promise<boolean> {
  const store = await RedisConsensus.connect(url(await group.primaryPort()), { prefix });
  try {
    await store.acknowledgeStoreReset();
    for (const key of FAILOVER_KEYS) if (!(await store.append(key, () => bytes('after ack'))).committed) return false;
    return true;
  } finally {
    await store.close();
  }
}


const url = (port: number): string => `redis://${HOST}:${port}`;
const bytes = (text: string): Buffer => Buffer.from(text, 'utf8');

/**
 * The faults: SIGKILL (the primary gone for good), SIGSTOP for 4 s (then resumed), a partition of
 * 6 s (then healed) between the primary, with the processes connected to it directly, and
 * everything else (group started `partitionable`).
 */
export type Fault = 'sigkill' | 'sigstop' | 'partition';

/**
 * One run: first commits replicated, the roles of `failoverRoles` under load 1.5 s, the fault on the
 * primary, until the Sentinels promote a replica and the old primary (if resumed) is made a
 * replica, until every process has made calls since, then the history checked against the new
 * primary's data, and the rollbacks acknowledged.
 */
export async function runScenario(group: SentinelGroup, fault: Fault): Promise<Findings> {
  const prefix = `rcf-${fault}-${process.pid}-${Date.now().toString(36)}`;
  await firstCommits(group, prefix);
  const roles = failoverRoles({ durability: { replicas: 1, timeoutMs: 500 } });
  // On the primary's side of a partition: a plain and a durable compare-and-set writer.
  if (fault === 'partition') {
    roles.push({ name: 'cas plain', kind: 'cas', processes: 1, keys: ['p2', 'p3'], direct: true });
    roles.push({ name: 'cas durable', kind: 'cas', processes: 1, keys: ['d2', 'd3'], direct: true,
      options: { durability: { replicas: 1, timeoutMs: 500 } } });
  }
  const run = startWorkload(group, prefix, roles);
  try {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const primary = group.servers[0]!;
    const faultAt = performance.now();
    if (fault === 'sigkill') await primary.crash();
    else if (fault === 'sigstop') primary.pause();
    else group.proxy!.partition();
    if (fault === 'sigstop') await new Promise((resolve) => setTimeout(resolve, 4000));
    if (fault === 'sigstop') primary.resume();
    if (fault === 'partition') {
      await until('Sentinel names another primary', 20_000, async () => (await group.primaryPort()) !== primary.port + 3);
      await new Promise((resolve) => setTimeout(resolve, 3000));
      group.proxy!.heal();
    }
    await until('Sentinel names another primary', 20_000, async () => ![primary.port, primary.port + 3].includes(await group.primaryPort()));
    // Until then, clients still connected to a resumed old primary go on writing there (split brain).
    if (fault !== 'sigkill') {
      await until('the old primary is made a replica', 30_000, async () =>
        infoFields(String(await command(primary.port, 'INFO', 'replication'))).role === 'slave');
    }
    const splitBrainMs = performance.now() - faultAt;
    await settle(run, performance.now());
    await run.stop();
    const stored = await readStore(await group.primaryPort(), prefix, FAILOVER_KEYS);
    const findings = check(run, stored, prefix, faultAt);
    findings.splitBrainMs = splitBrainMs;
    findings.afterAcknowledgement = await afterAcknowledgement(group, prefix);
    return findings;
  } finally {
    await run.stop();
  }
}
