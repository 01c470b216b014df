/**
 * Real Redis servers started by the tests themselves, for what must not be done to the shared
 * Redis at 6379: a Redis Cluster of 3 primaries + 3 replicas, and standalone primaries with
 * replicas. Every server listens on loopback only, keeps nothing on disk (`--save ""`), lives in
 * its own temp dir, and is killed by `stop()` or, failing that, when the process exits.
 *
 * When `redis-server` is missing the cluster suites are skipped loudly, unless REQUIRE_REDIS=1,
 * which makes that a failure.
 */
import { spawnSync } from 'node:child_process';
import { Cluster, Redis } from 'ioredis';
import type { ClusterOptions } from 'ioredis';
import { RedisConsensus } from '../../lib/index.js';
import type { RedisConsensusOptions } from '../../lib/index.js';
import type { Backend, Store } from './backends.js';
import { freshPrefix, REQUIRE_REDIS } from './backends.js';
import { RedisServer } from './redis-server.js';

const HOST = '127.0.0.1';

/** Whether redis-server and redis-cli are on PATH; fails the run if they must be and are not. */
export function redisServerAvailable(): boolean {
  const found = ['redis-server', 'redis-cli'].every(
    (tool) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0);
  if (found) return true;
  if (REQUIRE_REDIS) throw new Error('REQUIRE_REDIS=1 but redis-server / redis-cli are not on PATH');
  console.warn('\n!!! SKIPPING Redis Cluster and replication suites: redis-server / redis-cli not on PATH. ' +
    'Set REQUIRE_REDIS=1 to make this a failure. !!!\n');
  return false;
}

/** Starts a redis-server on `port` with `args` added, and waits until it answers PING. */
export function startServer(port: number, args: string[] = []): Promise<RedisServer> {
  // Replicas sync at once (Redis 7 otherwise waits 5 s for more replicas to share a transfer).
  return RedisServer.start({ port, args: ['--repl-diskless-sync-delay', '0', ...args] });
}

/**
 * Starts a Sentinel on `port` watching the primary on `primaryPort` as `name`, with quorum 1 and
 * quick failure detection: the primary is down after `downAfterMs` without a reply (a loaded
 * machine can stall a live primary for a second: a longer one avoids a spurious failover).
 */
export function startSentinel(port: number, name: string, primaryPort: number, downAfterMs = 1000): Promise<RedisServer> {
  return RedisServer.start({
    port,
    args: ['--sentinel'],
    config: [
      `sentinel monitor ${name} ${HOST} ${primaryPort} 1`,
      `sentinel down-after-milliseconds ${name} ${downAfterMs}`,
      `sentinel failover-timeout ${name} 5000`,
      '',
    ].join('\n'),
  });
}

/** Stops servers and removes their dirs; waits until the processes are gone. */
export async function stopServers(servers: readonly RedisServer[]): Promise<void> {
  await Promise.all(servers.map((server) => server.stop()));
}

/** Sends one command on a short-lived connection; rejects when nobody answers. */
export function command(port: number, ...args: (string | number)[]): Promise<unknown> {
  return commandAt(HOST, port, ...args);
}

/** `command` to a server at `host` (e.g. in a network namespace, `netns.ts`). */
export async function commandAt(host: string, port: number, ...args: (string | number)[]): Promise<unknown> {
  const client = new Redis({
    host, port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null,
    connectTimeout: 1000, enableOfflineQueue: false,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return await client.call(String(args[0]), ...args.slice(1).map(String));
  } finally {
    client.disconnect();
  }
}

/** Parses an INFO (or CLUSTER INFO) reply into fields. */
export function infoFields(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0) fields[line.slice(0, colon)] = line.slice(colon + 1).trim();
  }
  return fields;
}

/** Polls `check` until it returns true, or fails after `timeoutMs`. */
export async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}` +
        (last instanceof Error ? `: ${last.message}` : ''));
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** One line of CLUSTER NODES. */
export interface ClusterNode {
  readonly id: string;
  readonly port: number;
  readonly role: 'master' | 'slave';
  /** The id of its primary (replicas). */
  readonly primaryId: string | undefined;
  readonly failed: boolean;
  /** Slot ranges served, as [first, last] (primaries). */
  readonly slots: Array<[number, number]>;
}

/** A Redis Cluster of ours. */
export interface TestCluster {
  readonly servers: RedisServer[];
  readonly startupNodes: Array<{ host: string; port: number }>;
  /** The cluster as the server on `port` sees it. */
  topology(port?: number): Promise<ClusterNode[]>;
  /** A new ioredis Cluster client (the caller quits it). */
  client(options?: ClusterOptions): Cluster;
  /** Waits until every live node reports cluster_state:ok and all agree on every node's role, primary and slots. */
  settled(timeoutMs?: number): Promise<void>;
  /** Kills every server and removes their dirs. */
  stop(): Promise<void>;
}

/** Cluster tuning for tests: fast failure detection, but not so fast a busy 2-core box flaps. */
const NODE_TIMEOUT_MS = 2000;

/**
 * Starts 6 servers on `basePort` .. `basePort + 5` (cluster bus on `basePort + busOffset + i`),
 * joins them with `redis-cli --cluster create --cluster-replicas 1`, and waits until the cluster
 * is ok everywhere and every replica is in sync.
 */
export async function startCluster(basePort: number, busOffset = 100): Promise<TestCluster> {
  const ports = Array.from({ length: 6 }, (_, i) => basePort + i);
  const servers: RedisServer[] = [];
  const stop = async (): Promise<void> => stopServers(servers);
  try {
    // Each server is listed as soon as it runs, so that a failure to start another stops it too.
    await Promise.all(ports.map(async (port, i) => servers.push(await startServer(port, [
      '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
      '--cluster-node-timeout', String(NODE_TIMEOUT_MS), '--cluster-port', String(basePort + busOffset + i),
      // A replica may always take over, however long it was cut off: tests kill primaries on purpose.
      '--cluster-replica-validity-factor', '0',
      // Slots of a live primary keep serving while another primary's are failing over.
      '--cluster-require-full-coverage', 'no',
    ]))));
    const created = spawnSync('redis-cli', [
      '--cluster', 'create', ...ports.map((port) => `${HOST}:${port}`), '--cluster-replicas', '1', '--cluster-yes',
    ], { encoding: 'utf8', timeout: 30_000 });
    if (created.status !== 0) {
      throw new Error(`redis-cli --cluster create failed: ${created.stdout}\n${created.stderr}`);
    }
    const cluster: TestCluster = {
      servers,
      startupNodes: ports.map((port) => ({ host: HOST, port })),
      topology: (port = liveServers(servers)[0]!.port) => topology(port),
      client: (options = {}) => {
        const client = new Cluster(cluster.startupNodes, options);
        client.on('error', () => {});
        return client;
      },
      settled: (timeoutMs = 20_000) => settled(servers, timeoutMs),
      stop,
    };
    await cluster.settled();
    return cluster;
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Starts a cluster like `startCluster` on a random base port with every port (bus included) in
 * `first` .. `last`, trying other bases when one is taken (several spec files may run at once).
 */
export async function startClusterInRange(first: number, last: number): Promise<TestCluster> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 4; attempt++) {
    // Ports base..base+5, cluster bus base+100..base+105.
    const base = first + 10 * Math.floor(Math.random() * ((last - first - 200) / 10));
    try {
      return await startCluster(base);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

function liveServers(servers: readonly RedisServer[]): RedisServer[] {
  return servers.filter((server) => server.running);
}

async function topology(port: number): Promise<ClusterNode[]> {
  const text = String(await command(port, 'CLUSTER', 'NODES'));
  return text.trim().split('\n').map((line) => {
    const [id = '', address = '', flags = '', primary = '', , , , , ...slots] = line.split(' ');
    const flagList = flags.split(',');
    return {
      id,
      port: Number(address.split('@')[0]!.split(':')[1]),
      role: flagList.includes('master') ? 'master' : 'slave',
      primaryId: primary === '-' ? undefined : primary,
      failed: flagList.includes('fail') || flagList.includes('fail?'),
      slots: slots.filter((range) => !range.startsWith('[')).map((range) => {
        const [first, last = first] = range.split('-');
        return [Number(first), Number(last)] as [number, number];
      }),
    };
  });
}

async function settled(servers: readonly RedisServer[], timeoutMs: number): Promise<void> {
  await until('the cluster is ok on every node', timeoutMs, async () => {
    const live = liveServers(servers);
    const views = await Promise.all(live.map(async (server) => {
      const info = infoFields(String(await command(server.port, 'CLUSTER', 'INFO')));
      const nodes = await topology(server.port);
      return { info, nodes };
    }));
    if (!views.every(({ info }) => info.cluster_state === 'ok' && info.cluster_slots_assigned === '16384')) {
      return false;
    }
    // Every node agrees on every node: its role, its primary, what it serves, whether it failed.
    // Primaries alone are not enough: right after `--cluster create`, and after a failover, a
    // node may still be a slot-less primary in another's view although it already is a replica
    // (and a test that picks "another primary" from that view sends SETSLOT to a replica).
    const picture = (nodes: ClusterNode[]): string => JSON.stringify(nodes
      .map((node) => node.failed ? [node.id, 'failed'] : [node.id, node.role, node.primaryId ?? '-', node.slots])
      .sort());
    if (new Set(views.map(({ nodes }) => picture(nodes))).size !== 1) return false;
    // Every live replica is in sync with its primary.
    const replication = await Promise.all(live.map(async (server) =>
      infoFields(String(await command(server.port, 'INFO', 'replication')))));
    return replication.every((info) => info.role === 'master' || info.master_link_status === 'up');
  });
}

/** Whether a Redis Cluster can be started here; throws when REQUIRE_REDIS=1 and it cannot. */
export async function clusterAvailable(): Promise<boolean> {
  return redisServerAvailable();
}

/**
 * A `raw` client for checking what a Cluster stores: an ioredis Cluster whose `scan` and `keys`
 * go to every primary (a plain Cluster would ask one random node), and whose `unlink`/`del` of
 * several keys send one command per key (several keys in one command must share a slot).
 */
export function clusterRaw(cluster: Cluster): Redis {
  const eachPrimary = async (pattern: string): Promise<string[]> => {
    await ready(cluster);
    const found = await Promise.all(cluster.nodes('master').map(async (node) => {
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, page] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        keys.push(...page);
        cursor = next;
      } while (cursor !== '0');
      return keys;
    }));
    return [...new Set(found.flat())];
  };
  const perKey = (name: 'unlink' | 'del') => async (...keys: string[]): Promise<number> => {
    const counts = await Promise.all(keys.map((key) => cluster[name](key)));
    return counts.reduce((sum, count) => sum + count, 0);
  };
  const overrides: Record<string, unknown> = {
    // Every primary in one go: the cursor of the answer is always '0'.
    scan: async (_cursor: string, ...args: (string | number)[]) => {
      const match = args.findIndex((arg) => String(arg).toUpperCase() === 'MATCH');
      return ['0', await eachPrimary(match === -1 ? '*' : String(args[match + 1]))];
    },
    keys: (pattern: string) => eachPrimary(pattern),
    unlink: perKey('unlink'),
    del: perKey('del'),
  };
  return new Proxy(cluster, {
    get(target, property, receiver) {
      if (typeof property === 'string' && property in overrides) return overrides[property];
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as unknown as Redis;
}

/** Deletes every key under `prefix` on every primary of a cluster. */
export async function deleteClusterPrefix(cluster: Cluster, prefix: string): Promise<void> {
  await ready(cluster);
  await Promise.all(cluster.nodes('master').map(async (node) => {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      // One key per command: keys of different slots cannot share one.
      await Promise.all(keys.map((key) => node.unlink(key)));
      cursor = next;
    } while (cursor !== '0');
  }));
}

/**
 * A `Backend` on a Redis Cluster: each store is `new RedisConsensus(new Cluster(...), options)`
 * on a cluster client of its own (a client as users make them, with ioredis's defaults), isolated
 * by prefix; peers connect with `RedisConsensus.connectCluster`. Disposing deletes the prefix's
 * keys on every primary.
 */
export function clusterBackend(cluster: TestCluster): Backend {
  const opened: Array<() => Promise<void>> = [];
  return {
    name: 'redis-cluster',
    async store(options: RedisConsensusOptions = {}): Promise<Store> {
      const prefix = options.prefix ?? freshPrefix('cluster');
      const client = cluster.client();
      const consensus = new RedisConsensus(client, { ...options, prefix });
      const rawClient = cluster.client();
      const raw = clusterRaw(rawClient);
      return {
        consensus, raw, prefix,
        async dispose() {
          await consensus.close();
          await client.quit();
          await deleteClusterPrefix(rawClient, prefix);
          await rawClient.quit();
        },
      };
    },
    async peer(store: Store, options: RedisConsensusOptions = {}): Promise<RedisConsensus> {
      const peer = await RedisConsensus.connectCluster(cluster.startupNodes, { ...options, prefix: store.prefix });
      opened.push(() => peer.close());
      return peer;
    },
    async close() {
      await Promise.all(opened.splice(0).map((close) => close()));
    },
  };
}

/** What a compare-and-set workload saw, for checking the store against afterwards. */
export interface Workload {
  /** Acknowledged commits: key → seqno → payload. */
  readonly acknowledged: Map<string, Map<bigint, string>>;
  /** Writes whose outcome is unknown (indeterminate): key → seqno → payloads tried. */
  readonly uncertain: Map<string, Map<bigint, Set<string>>>;
  readonly outcomes: { committed: number; mismatch: number; determinate: number; indeterminate: number };
  /** Distinct error messages seen, with counts. */
  readonly errors: Map<string, number>;
  /** Asks every worker to stop after its current step, and waits for them. */
  stop(): Promise<void>;
}

/**
 * Runs `workers` loops of head + compareAndSet(head, head + 1) over `keys`, spread over the
 * given stores (worker i uses stores[i % n]), until `stop()`. Failures are counted, never thrown:
 * a workload under faults keeps going.
 */
export function casWorkload(stores: readonly RedisConsensus[], keys: readonly string[], workers: number): Workload {
  const acknowledged = new Map<string, Map<bigint, string>>(keys.map((key) => [key, new Map()]));
  const uncertain = new Map<string, Map<bigint, Set<string>>>(keys.map((key) => [key, new Map()]));
  const outcomes = { committed: 0, mismatch: 0, determinate: 0, indeterminate: 0 };
  const errors = new Map<string, number>();
  let stopping = false;
  const failed = (err: unknown): void => {
    const external = err as { determinate?: boolean; message?: string };
    if (external.determinate === false) outcomes.indeterminate++;
    else outcomes.determinate++;
    const message = String(external.message ?? err).replace(/\d+/g, 'N');
    errors.set(message, (errors.get(message) ?? 0) + 1);
  };
  const loop = async (worker: number): Promise<void> => {
    const consensus = stores[worker % stores.length]!;
    for (let step = 0; !stopping; step++) {
      const key = keys[(worker + step * workers) % keys.length]!;
      let expected: bigint | null;
      try {
        expected = (await consensus.head(key))?.seqno ?? null;
      } catch (err) {
        failed(err);
        await new Promise((resolve) => setTimeout(resolve, 20));
        continue;
      }
      const seqno = expected === null ? 0n : expected + 1n;
      const payload = `w${worker}s${step}`;
      try {
        const result = await consensus.compareAndSet(key, expected, { seqno, data: Buffer.from(payload) });
        if (result === 'Committed') {
          outcomes.committed++;
          acknowledged.get(key)!.set(seqno, payload);
        } else {
          outcomes.mismatch++;
        }
      } catch (err) {
        failed(err);
        if ((err as { determinate?: boolean }).determinate === false) {
          const tried = uncertain.get(key)!;
          if (!tried.has(seqno)) tried.set(seqno, new Set());
          tried.get(seqno)!.add(payload);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  };
  const running = Array.from({ length: workers }, (_, worker) => loop(worker));
  return {
    acknowledged, uncertain, outcomes, errors,
    async stop() {
      stopping = true;
      await Promise.all(running);
    },
  };
}

/** What the store holds compared with what a workload was told. */
export interface Audit {
  /** Acknowledged commits missing from the store (or stored with other data). */
  readonly lost: string[];
  /** Stored versions nobody wrote: neither acknowledged nor an attempt of unknown outcome. */
  readonly phantom: string[];
  /** Acknowledged commits in all. */
  readonly acknowledged: number;
  /** Stored versions that came from writes reported indeterminate. */
  readonly fromUncertain: number;
}

/** Reads every key of a workload back (with `reader`) and compares. */
export async function audit(reader: RedisConsensus, workload: Workload): Promise<Audit> {
  const lost: string[] = [];
  const phantom: string[] = [];
  let acknowledgedCount = 0;
  let fromUncertain = 0;
  for (const [key, commits] of workload.acknowledged) {
    const stored = new Map((await reader.scan(key, 0, 1_000_000)).map(
      (version) => [version.seqno, Buffer.from(version.data).toString('utf8')]));
    for (const [seqno, payload] of commits) {
      acknowledgedCount++;
      if (stored.get(seqno) !== payload) lost.push(`${key}@${seqno}: acknowledged ${payload}, stored ${stored.get(seqno)}`);
    }
    for (const [seqno, payload] of stored) {
      if (commits.get(seqno) === payload) continue;
      if (workload.uncertain.get(key)?.get(seqno)?.has(payload)) fromUncertain++;
      else phantom.push(`${key}@${seqno}: ${payload}`);
    }
  }
  return { lost, phantom, acknowledged: acknowledgedCount, fromUncertain };
}

/** Waits until the ioredis client is ready (a Cluster knows its slots). */
export async function ready(client: Cluster | Redis): Promise<void> {
  if (client.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`client not ready (status ${client.status})`)), 10_000);
    client.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The owner (primary) of every slot, from a node's view of the cluster. */
export function slotOwners(nodes: ClusterNode[]): Map<number, ClusterNode> {
  const owners = new Map<number, ClusterNode>();
  for (const node of nodes) {
    if (node.role !== 'master' || node.failed) continue;
    for (const [first, last] of node.slots) for (let slot = first; slot <= last; slot++) owners.set(slot, node);
  }
  return owners;
}

/**
 * Moves `slot` from the primary on `from` to the one on `to` by hand, one key per MIGRATE with a
 * pause between, so that scripts meet ASK (keys already gone) and TRYAGAIN (keys split) on the way.
 */
export async function moveSlot(nodes: ClusterNode[], slot: number, from: ClusterNode, to: ClusterNode, pauseMs: number): Promise<number> {
  const moved = await migrateKeys(slot, from, to, pauseMs);
  await finishMove(nodes, slot, to);
  return moved;
}

/** Marks `slot` as moving from `from` to `to` and migrates its keys; the slot stays in between. */
export async function migrateKeys(slot: number, from: ClusterNode, to: ClusterNode, pauseMs: number): Promise<number> {
  const source = new Redis({ port: from.port });
  let moved = 0;
  try {
    await command(to.port, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', from.id);
    await source.call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', to.id);
    for (;;) {
      const keys = await source.call('CLUSTER', 'GETKEYSINSLOT', slot, 1) as string[];
      if (keys.length === 0) break;
      await source.call('MIGRATE', '127.0.0.1', to.port, '', 0, 5000, 'KEYS', keys[0]!);
      moved++;
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  } finally {
    source.disconnect();
  }
  return moved;
}

/** Gives `slot` to `to`, on `to` first, then on every other primary. */
export async function finishMove(nodes: ClusterNode[], slot: number, to: ClusterNode): Promise<void> {
  await command(to.port, 'CLUSTER', 'SETSLOT', slot, 'NODE', to.id);
  for (const node of nodes) {
    if (node.role === 'master' && !node.failed && node.port !== to.port) {
      await command(node.port, 'CLUSTER', 'SETSLOT', slot, 'NODE', to.id);
    }
  }
}
