/**
 * A client process of the failover harness (spec/support/failover.ts): runs the logical processes
 * it is given (each a `RedisConsensus` with a client of its own) until its stdin closes, and prints
 * every operation as one JSON line, with invoke and complete times on a clock the parent and every
 * worker share (`performance.timeOrigin + performance.now()`, ms since the epoch).
 *
 * Run by the parent as `node failover-worker.js '<WorkerConfig as JSON>'`, on the host or inside a
 * network namespace (`ip netns exec`) on the primary's side of a partition.
 */
import { Cluster, Redis } from 'ioredis';
import { ExternalError, RedisConsensus } from '../../lib/index.js';
import { SAFE_WRITE_OPTIONS, safeClusterOptions } from '../../lib/client.js';
import type { OpLine, WorkerConfig, WorkerProcess } from './failover.js';

const config = JSON.parse(process.argv[2]!) as WorkerConfig;
const now = (): number => performance.timeOrigin + performance.now();
let stopping = false;

function client(): Redis | Cluster {
  const target = config.target;
  const made = 'sentinels' in target
    ? new Redis({ sentinels: target.sentinels, name: target.name, ...SAFE_WRITE_OPTIONS })
    : 'cluster' in target
      ? new Cluster(target.cluster, safeClusterOptions())
      : new Redis({ ...target.direct, ...SAFE_WRITE_OPTIONS });
  made.on('error', () => {});
  return made;
}

function print(line: OpLine): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function work(store: RedisConsensus, { id, role }: WorkerProcess): Promise<void> {
  for (let step = 0; !stopping; step++) {
    const key = role.keys[(id + step) % role.keys.length]!;
    const start = now();
    const record = (op: Partial<OpLine>, kind: OpLine['kind'] = role.kind, begun = start): void => {
      print({ process: id, kind, key, start: begun, end: now(), ...op });
    };
    try {
      if (role.kind === 'append') {
        const data = `p${id}-${step}`;
        const result = await store.append(key, () => Buffer.from(data), { timeoutMs: 3000 });
        record({ committed: result.committed, version: result.committed ? { seqno: String(result.head.seqno), data } : undefined });
      } else if (role.kind === 'cas') {
        const head = await store.head(key);
        record({ version: head === null ? null : { seqno: String(head.seqno), data: head.data.toString() } }, 'head');
        const data = `p${id}-${step}`;
        const seqno = head === null ? 0n : head.seqno + 1n;
        const begun = now();
        const result = await store.compareAndSet(key, head?.seqno ?? null, { seqno, data: Buffer.from(data) });
        record({ committed: result === 'Committed', version: result === 'Committed' ? { seqno: String(seqno), data } : undefined }, 'cas', begun);
      } else {
        const head = await store.head(key);
        record({ version: head === null ? null : { seqno: String(head.seqno), data: head.data.toString() } });
      }
    } catch (err) {
      const external = err instanceof ExternalError ? err : undefined;
      record({ error: { code: external?.code ?? String(err), determinate: external?.determinate ?? true } });
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

const clients = config.processes.map(() => client());
const stores = clients.map((made, i) =>
  new RedisConsensus(made, { prefix: config.prefix, timeoutMs: 1000, ...config.processes[i]!.role.options }));
const loops = config.processes.map((worker, i) => work(stores[i]!, worker));
process.stdin.resume();
process.stdin.on('end', () => {
  stopping = true;
});
await Promise.all(loops);
await Promise.all(stores.map((store) => store.close().catch(() => undefined)));
for (const made of clients) made.disconnect();
process.exit(0);
