/**
 * `npm run failover`: the failover matrix of issue #19, on servers of its own (ports 7900-7932):
 * a Sentinel group (1 primary, 2 replicas, 3 Sentinels, down-after 1000 ms; ports 7920-7932) and a
 * Redis Cluster (3 primaries + 3 replicas, cluster-node-timeout 2000 ms; ports 7900-7915), under
 * load from client processes (separate `node` processes) appending and compare-and-setting with
 * `durability: { replicas: 1 }` and without, and readers, for each fault on the primary of the
 * keys (SIGKILL; SIGSTOP for 4 s, then resumed; a partition: the primary in a network namespace of
 * its own, with 2 processes on its side, its link cut, healed 3 s after the failover) and with
 * `min-replicas-to-write` 0 and 1 on the data servers. Every client operation is recorded and the
 * history checked (spec/support/failover.ts); prints one table (docs/correctness.md has the last
 * one measured).
 *
 *   npm run failover                                   # the whole matrix (~5 minutes)
 *   npm run failover -- --only sigstop --setups Cluster
 *
 * Partitions need root (network namespaces); without it Sentinel partitions go through a loopback
 * TCP proxy and Cluster partitions are skipped, loudly.
 */
import { parseArgs } from 'node:util';
import { describeFindings, runScenario, startSentinelGroup } from '../spec/support/failover.js';
import type { Fault, FailoverSetup, Findings } from '../spec/support/failover.js';
import { startFailoverCluster } from '../spec/support/failover-cluster.js';
import { netnsAvailable, Partitioner } from '../spec/support/netns.js';

const { values: args } = parseArgs({ options: { only: { type: 'string' }, setups: { type: 'string' } } });
const FAULTS: Fault[] = (args.only ?? 'sigkill,sigstop,partition').split(',') as Fault[];
const SETUPS = (args.setups ?? 'Sentinel,Cluster').split(',') as Array<FailoverSetup['name']>;
const partitioner = netnsAvailable() ? Partitioner.create() : undefined;
if (partitioner === undefined) console.error('[failover] no network namespaces here (root needed): Sentinel partitions use a loopback proxy, Cluster partitions are skipped');

interface Row {
  readonly setup: FailoverSetup['name'];
  readonly fault: Fault;
  readonly minReplicas: number;
  readonly partition: string;
  readonly findings: Findings;
}

const rows: Row[] = [];
for (const setupName of SETUPS) {
  for (const fault of FAULTS) {
    if (setupName === 'Cluster' && fault === 'partition' && partitioner === undefined) continue;
    for (const minReplicas of [0, 1]) {
      const serverArgs = minReplicas === 0 ? [] : ['--min-replicas-to-write', '1', '--min-replicas-max-lag', '10'];
      const partitioning = fault !== 'partition' ? undefined : partitioner ?? 'proxy';
      const setup = setupName === 'Sentinel'
        ? await startSentinelGroup(7920, serverArgs, partitioning)
        : await startFailoverCluster(7900, serverArgs, fault === 'partition' ? partitioner : undefined);
      try {
        const findings = await runScenario(setup, fault);
        console.error(describeFindings(`${setupName}, ${fault}, min-replicas-to-write ${minReplicas}`, findings));
        rows.push({ setup: setupName, fault, minReplicas, partition: setup.partition?.kind ?? '', findings });
      } finally {
        await setup.stop();
      }
    }
  }
}
partitioner?.close();

const count = (map: Map<string, number | string[]>, roles: string[]): number =>
  roles.reduce((sum, role) => {
    const value = map.get(role);
    return sum + (value === undefined ? 0 : Array.isArray(value) ? value.length : value);
  }, 0);
const errorsOf = (findings: Findings, pattern: RegExp): number =>
  [...findings.errors].filter(([name]) => pattern.test(name)).reduce((sum, [, n]) => sum + n, 0);

const lines = [
  '| setup | fault | min-replicas-to-write | durability | acknowledged | lost | seqnos with two payloads | ' +
    'backward reads | detections (calls refused, processes) | saw a lost commit, not refused | writes back after | ' +
    'split brain | errors: unavailable / timeout / replicas-short / other |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
];
for (const { setup, fault, minReplicas, partition, findings } of rows) {
  for (const [label, roles] of [['off', ['append plain', 'cas plain']], ['{ replicas: 1 }', ['append durable', 'cas durable']]] as const) {
    const errors = [
      errorsOf(findings, /unavailable/), errorsOf(findings, /timeout/), errorsOf(findings, /replicas-short/),
      errorsOf(findings, /^(?!.*(unavailable|timeout|replicas-short|store-rollback|store-reset)).*/),
    ];
    const faultName = fault === 'sigkill' ? 'SIGKILL' : fault === 'sigstop' ? 'SIGSTOP 4 s' : `partition (${partition})`;
    lines.push(`| ${setup} | ${faultName} | ${minReplicas} | ${label} | ` +
      `${count(findings.acknowledged, [...roles])} | ${count(findings.lost, [...roles])} | ${findings.twoPayloads.length} | ` +
      `${findings.backward.length} | ${findings.detections.rollback + findings.detections.reset} ` +
      `(${findings.detections.processes} of ${findings.detections.of}) | ${findings.unnamed.length} | ` +
      `${Number.isNaN(findings.recoveryMs) ? 'only after ack' : `${(findings.recoveryMs / 1000).toFixed(1)} s`} | ` +
      `${(findings.splitBrainMs / 1000).toFixed(1)} s | ${errors.join(' / ')} |`);
  }
}
console.log(lines.join('\n'));
console.log('\ntwo payloads, backward reads, detections, errors and times are per run (both durability settings ran at once).');
