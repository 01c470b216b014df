/**
 * Real network partitions for the failover tests (issue #19), with Linux network namespaces: a
 * bridge on the host (`10.231.N.1/24`) and one namespace per server that must be partitionable
 * (`rcf-fo-<pid>-<i>`, reached through a veth pair whose host end is a port of the bridge, at
 * `10.231.N.<i + 2>`). `cut()` takes the host end of the veth down: packets both ways are dropped
 * (nothing is refused or reset, as in a real partition: TCP retransmits until it gives up), for
 * servers and for client processes run inside the namespace. `heal()` brings it back up.
 *
 * Traffic only ever goes to loopback and to these namespaces: nothing is routed off the host.
 *
 * Needs root (CAP_NET_ADMIN) and `ip` (iproute2). `netnsAvailable()` says whether it works here:
 * without it the failover tests fall back to a loopback TCP proxy (`fault-proxy.ts`), except under
 * REQUIRE_REDIS=1, where a missing capability is a failure, not a silent fallback.
 *
 * Everything made here is removed by `close()`, on process exit and on SIGINT / SIGTERM; and
 * `Partitioner.create()` first sweeps namespaces and links left behind by runs whose process is
 * gone (a SIGKILLed run cannot clean up after itself).
 */
import { spawnSync } from 'node:child_process';
import { REQUIRE_REDIS } from './backends.js';

const PREFIX = 'rcf-fo-';

/** Runs `ip` with `args`; throws with its stderr when it fails (unless `tolerate`). */
function ip(args: readonly string[], tolerate = false): string {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0 && !tolerate) {
    throw new Error(`ip ${args.join(' ')} failed: ${result.error?.message ?? result.stderr.trim()}`);
  }
  return result.stdout ?? '';
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the namespaces (`rcf-fo-<pid>-*`) and links (`rcf<pid>b`, `rcf<pid>v<i>`) of runs whose
 * process is gone.
 */
export function sweepStale(): void {
  for (const line of ip(['netns', 'list'], true).split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const pid = new RegExp(`^${PREFIX}(\\d+)-`).exec(name)?.[1];
    if (pid !== undefined && !alive(Number(pid))) ip(['netns', 'del', name], true);
  }
  for (const line of ip(['-o', 'link', 'show'], true).split('\n')) {
    const name = /^\d+: (rcf\d+[bv]\d*)[@:]/.exec(line)?.[1];
    const pid = /^rcf(\d+)/.exec(name ?? '')?.[1];
    if (name !== undefined && pid !== undefined && !alive(Number(pid))) ip(['link', 'del', name], true);
  }
}

let probed: boolean | undefined;

/**
 * Whether namespaces can be made here (root, iproute2): tried once, by making and removing one.
 * Under REQUIRE_REDIS=1 a `false` throws instead.
 */
export function netnsAvailable(): boolean {
  if (probed === undefined) {
    const name = `${PREFIX}${process.pid}-probe`;
    probed = spawnSync('ip', ['netns', 'add', name], { stdio: 'ignore' }).status === 0;
    if (probed) ip(['netns', 'del', name], true);
  }
  if (!probed && REQUIRE_REDIS) {
    throw new Error('REQUIRE_REDIS=1 but network namespaces cannot be made here (root and iproute2 `ip` are needed ' +
      'for the failover partitions)');
  }
  return probed;
}

/** A namespace one server (and the client processes on its side) runs in. */
export interface Namespace {
  /** `rcf-fo-<pid>-<i>`. */
  readonly name: string;
  /** Its address on the bridge: `10.231.N.<i + 2>`. */
  readonly address: string;
  /** The argv prefix that runs a command inside it: `ip netns exec <name>`. */
  readonly exec: readonly string[];
  /** Drops all traffic between it and everything else. */
  cut(): void;
  /** Lets traffic through again. */
  heal(): void;
  /** Deletes the namespace and its veth pair (stop what runs in it first). */
  remove(): void;
}

const live = new Set<Partitioner>();
process.on('exit', () => {
  for (const partitioner of live) partitioner.close();
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    for (const partitioner of live) partitioner.close();
    process.exit(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const)[signal]);
  });
}

/** The bridge and namespaces of one test process. */
export class Partitioner {
  /** The host's address on the bridge, `10.231.N.1`: bind host servers to it so namespaces reach them. */
  readonly hostAddress: string;
  private readonly bridge: string;
  private readonly namespaces: Namespace[] = [];
  private closed = false;

  private constructor(private readonly subnet: string) {
    this.bridge = `rcf${process.pid}b`;
    this.hostAddress = `${subnet}.1`;
  }

  /** Sweeps stale runs, then makes the bridge on a /24 of 10.231.0.0/16 no other run uses. */
  static create(): Partitioner {
    sweepStale();
    const used = ip(['-o', '-4', 'addr', 'show']);
    let third = 20 + process.pid % 200;
    while (used.includes(` 10.231.${third}.`)) third = 20 + (third - 19) % 200;
    const partitioner = new Partitioner(`10.231.${third}`);
    live.add(partitioner);
    try {
      ip(['link', 'add', partitioner.bridge, 'type', 'bridge']);
      ip(['addr', 'add', `${partitioner.hostAddress}/24`, 'dev', partitioner.bridge]);
      ip(['link', 'set', partitioner.bridge, 'up']);
      return partitioner;
    } catch (err) {
      partitioner.close();
      throw err;
    }
  }

  /** A new namespace on the bridge, with its loopback up. */
  namespace(): Namespace {
    const index = this.namespaces.length;
    const name = `${PREFIX}${process.pid}-${index}`;
    const hostEnd = `rcf${process.pid}v${index}`;
    const address = `${this.subnet}.${index + 2}`;
    ip(['netns', 'add', name]);
    const namespace: Namespace = {
      name, address, exec: ['ip', 'netns', 'exec', name],
      cut: () => ip(['link', 'set', hostEnd, 'down']),
      heal: () => ip(['link', 'set', hostEnd, 'up']),
      remove: () => {
        ip(['link', 'del', hostEnd], true);
        ip(['netns', 'del', name], true);
      },
    };
    this.namespaces.push(namespace);
    ip(['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]);
    ip(['link', 'set', hostEnd, 'master', this.bridge, 'up']);
    ip(['-n', name, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
    ip(['-n', name, 'link', 'set', 'eth0', 'up']);
    ip(['-n', name, 'link', 'set', 'lo', 'up']);
    return namespace;
  }

  /** Removes the namespaces and the bridge (deleting a namespace deletes its veth pair). Safe to call more than once. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    live.delete(this);
    for (const namespace of this.namespaces) namespace.remove();
    ip(['link', 'del', this.bridge], true);
  }
}
