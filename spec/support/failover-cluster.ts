/**
 * A Redis Cluster for the failover harness (spec/support/failover.ts): 3 primaries + 3 replicas on
 * ports `base .. base + 5`, cluster bus on `base + 10 .. base + 15`, cluster-node-timeout 2000 ms,
 * built by hand (slot ranges, MEET, REPLICATE) so that the first primary can run in a network
 * namespace of its own (`netns.ts`) while the others listen on the host's bridge address, each
 * node announcing the address it is reached at.
 *
 * The keys of a run are chosen so that every one hashes to a slot of the first primary (the
 * victim of the fault): `d0`, `d0.1`, `d0.2` ... the first name whose bucket's slot it serves.
 */
import { RedisConsensus } from '../../lib/index.js';
import { keyNames } from '../../lib/layout.js';
import { commandAt, infoFields, stopServers, until } from './cluster.js';
import type { Endpoint, FailoverSetup } from './failover.js';
import { SENTINEL_KEYS } from './failover.js';
import type { Namespace, Partitioner } from './netns.js';
import { RedisServer } from './redis-server.js';

const NODE_TIMEOUT_MS = 2000;
const RANGES: Array<[number, number]> = [[0, 5460], [5461, 10922], [10923, 16383]];

/**
 * Starts the cluster; with a `Partitioner` the first primary runs in a namespace (its link can be
 * cut), the rest on the host's bridge address. `serverArgs` go to every node (e.g.
 * `--min-replicas-to-write 1`).
 */
export async function startFailoverCluster(base: number, serverArgs: string[] = [], partitioner?: Partitioner): Promise<FailoverSetup> {
  const servers: RedisServer[] = [];
  let namespace: Namespace | undefined;
  const stop = async (): Promise<void> => {
    await stopServers(servers);
    namespace?.remove();
  };
  try {
    namespace = partitioner?.namespace();
    const hostAddress = partitioner?.hostAddress ?? '127.0.0.1';
    for (let i = 0; i < 6; i++) {
      const host = i === 0 && namespace !== undefined ? namespace.address : hostAddress;
      servers.push(await RedisServer.start({
        port: base + i, host, launcher: i === 0 ? namespace?.exec : undefined,
        args: [
          '--repl-diskless-sync-delay', '0',
          '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
          '--cluster-node-timeout', String(NODE_TIMEOUT_MS), '--cluster-port', String(base + 10 + i),
          '--cluster-announce-ip', host,
          // A replica may always take over, however long it was cut off: the tests fail primaries on purpose.
          '--cluster-replica-validity-factor', '0',
          // The other primaries' slots keep serving while one fails over.
          '--cluster-require-full-coverage', 'no',
          ...serverArgs,
        ],
      }));
    }
    const ask = (server: RedisServer, ...args: (string | number)[]): Promise<unknown> => commandAt(server.host, server.port, ...args);
    const ids: string[] = [];
    for (const server of servers) ids.push(String(await ask(server, 'CLUSTER', 'MYID')));
    for (let i = 0; i < 3; i++) {
      await ask(servers[i]!, 'CLUSTER', 'SET-CONFIG-EPOCH', i + 1);
      await ask(servers[i]!, 'CLUSTER', 'ADDSLOTSRANGE', ...RANGES[i]!);
    }
    for (const server of servers.slice(1)) await ask(server, 'CLUSTER', 'MEET', servers[0]!.host, servers[0]!.port, servers[0]!.port + 10);
    await until('every node knows every other', 20_000, async () => (await Promise.all(servers.map(async (server) => {
      const lines = String(await ask(server, 'CLUSTER', 'NODES')).trim().split('\n');
      return lines.length === 6 && lines.every((line) => !/handshake|noaddr/.test(line));
    }))).every(Boolean));
    for (let i = 3; i < 6; i++) await ask(servers[i]!, 'CLUSTER', 'REPLICATE', ids[i - 3]!);
    await until('the cluster is ok, every replica in sync', 30_000, async () => (await Promise.all(servers.map(async (server, i) => {
      const info = infoFields(String(await ask(server, 'CLUSTER', 'INFO')));
      const replication = infoFields(String(await ask(server, 'INFO', 'replication')));
      const nodes = String(await ask(server, 'CLUSTER', 'NODES'));
      return info.cluster_state === 'ok' && (nodes.match(/slave/g) ?? []).length === 3 &&
        (i < 3 ? replication.role === 'master' : replication.master_link_status === 'up');
    }))).every(Boolean));
    const victim = servers[0]!;
    const keys: string[] = [];
    for (const name of SENTINEL_KEYS) {
      for (let n = 0; ; n++) {
        const key = n === 0 ? name : `${name}.${n}`;
        const slot = Number(await ask(servers[1]!, 'CLUSTER', 'KEYSLOT', keyNames('any', key).versions));
        if (slot <= RANGES[0]![1]) {
          keys.push(key);
          break;
        }
      }
    }
    const slot = Number(await ask(servers[1]!, 'CLUSTER', 'KEYSLOT', keyNames('any', keys[0]!).versions));
    const nodes = servers.map((server) => ({ host: server.host, port: server.port }));
    const primary = async (): Promise<Endpoint> => {
      // As the rest of the cluster sees it (a cut-off or frozen victim would name itself).
      for (const server of servers.slice(1)) {
        if (!server.running) continue;
        try {
          const slots = await ask(server, 'CLUSTER', 'SLOTS') as Array<[number, number, [string, number]]>;
          const owner = slots.find(([first, last]) => first <= slot && slot <= last)?.[2];
          if (owner !== undefined) return { host: owner[0], port: Number(owner[1]) };
        } catch {
          // Ask the next one.
        }
      }
      throw new Error('no node answered');
    };
    return {
      name: 'Cluster', keys, victim, stop, primary,
      target: { cluster: nodes.slice(1) },
      // Cluster clients that know the victim alone: while cut off they write there; after the heal
      // its MOVED replies send them to the new primary.
      sideTarget: { cluster: [{ host: victim.host, port: victim.port }] },
      partition: namespace === undefined ? undefined : {
        kind: 'netns', exec: namespace.exec,
        cut: () => namespace!.cut(),
        heal: () => namespace!.heal(),
      },
      connect: (prefix) => RedisConsensus.connectCluster(nodes.slice(1), { prefix }),
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
