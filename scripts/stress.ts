/**
 * A soak test: the concurrency workload of spec/support/workload.ts for longer, against a
 * redis-server of its own, with faults injected while it runs, then the linearizability checker
 * and the invariants on the whole history.
 *
 *   npm run stress -- --seconds 60 [--clients 32] [--processes 2] [--keys 4]
 *                     [--kill-every-ms 250] [--flush-every-ms 1000] [--pause-every-s 7]
 *                     [--restart-every-s 0]
 *                     [--url redis://...] [--volatile] [--given-clients]
 *
 * Faults (on its own server only): `CLIENT KILL` of a few of the library's connections at a time
 * (writes in flight become indeterminate), `SCRIPT FLUSH` (the next EVALSHA meets NOSCRIPT),
 * `CLIENT PAUSE` for longer than the call timeout (writes time out as indeterminate and then
 * take effect after the call has failed, reads fail as determinate), and
 * with --restart-every-s a crash (SIGKILL) and restart of the server, which runs with
 * `appendonly yes` and `appendfsync always` so that no acknowledged write may be lost.
 * With --url the run uses that server and injects no faults: it may be shared.
 * --given-clients hands each store an ioredis client with its defaults instead of using
 * `RedisConsensus.connect` (the library then sends writes over a duplicate of it).
 * --volatile runs the server without persistence, so a restart loses everything: a check of
 * the checker, which must then report lost writes and violations.
 *
 * Exits non-zero on any violation (or an inconclusive check).
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { deletePrefix, freshPrefix } from '../spec/support/backends.js';
import { RedisServer } from '../spec/support/redis-server.js';
import { checkHistory, runWorkload } from '../spec/support/workload.js';

/** This script's redis-servers use ports in this range (loopback only). */
const PORTS = { first: 7100, last: 7149 };

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    clients: { type: 'string', default: '32' },
    processes: { type: 'string', default: '0' },
    keys: { type: 'string', default: '4' },
    url: { type: 'string' },
    'kill-every-ms': { type: 'string', default: '250' },
    'flush-every-ms': { type: 'string', default: '1000' },
    'restart-every-s': { type: 'string', default: '0' },
    'pause-every-s': { type: 'string', default: '7' },
    volatile: { type: 'boolean', default: false },
    'given-clients': { type: 'boolean', default: false },
  },
});

const seconds = Number(args.seconds);
const killEveryMs = Number(args['kill-every-ms']);
const flushEveryMs = Number(args['flush-every-ms']);
const restartEveryMs = Number(args['restart-every-s']) * 1000;
const pauseEveryMs = Number(args['pause-every-s']) * 1000;
/** The library's per-call timeout in this run. */
const TIMEOUT_MS = 2000;
/** Longer than the timeout: writes caught by a pause fail as indeterminate, then run after it. */
const PAUSE_MS = TIMEOUT_MS + 500;

/** A redis-server of our own on the first free port of our range, restartable from its append-only file. */
function startOwnServer(): Promise<RedisServer> {
  return RedisServer.startInRange(PORTS.first, PORTS.last, {
    args: args.volatile ? ['--appendonly', 'no'] : ['--appendonly', 'yes', '--appendfsync', 'always'],
  });
}

/** Injects faults into our own server until stopped; counts them by kind. */
function injectFaults(server: RedisServer, faults: Record<string, number>): () => Promise<void> {
  const control = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
  control.on('error', () => {});
  let running = true;
  let restarting = false;
  const loop = async (everyMs: number, fault: () => Promise<void>): Promise<void> => {
    if (!(everyMs > 0)) return;
    while (running) {
      await sleep(everyMs * (0.5 + Math.random()));
      if (!running || restarting) continue;
      try {
        await fault();
      } catch {
        // The server may be restarting: a fault that could not be injected is just not counted.
      }
    }
  };
  const loops = [
    loop(killEveryMs, async () => {
      const me = String(await control.client('ID'));
      const ids = String(await control.call('CLIENT', 'LIST', 'TYPE', 'normal'))
        .split('\n').map((line) => /^id=(\d+)/.exec(line)?.[1]).filter((id): id is string => id !== undefined && id !== me);
      const victims = ids.sort(() => Math.random() - 0.5).slice(0, 1 + Math.floor(Math.random() * 3));
      for (const id of victims) {
        faults['client kill'] = (faults['client kill'] ?? 0) + Number(await control.client('KILL', 'ID', id));
      }
    }),
    loop(flushEveryMs, async () => {
      await control.script('FLUSH');
      faults['script flush'] = (faults['script flush'] ?? 0) + 1;
    }),
    loop(pauseEveryMs, async () => {
      await control.call('CLIENT', 'PAUSE', String(PAUSE_MS), 'ALL');
      faults['client pause'] = (faults['client pause'] ?? 0) + 1;
      await sleep(PAUSE_MS);
    }),
    loop(restartEveryMs, async () => {
      restarting = true;
      try {
        await server.crash();
        faults['crash and restart'] = (faults['crash and restart'] ?? 0) + 1;
        await server.start();
      } finally {
        restarting = false;
      }
    }),
  ];
  return async () => {
    running = false;
    await Promise.all(loops);
    control.disconnect();
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main(): Promise<number> {
  const server = args.url === undefined ? await startOwnServer() : undefined;
  const url = args.url ?? server!.url;
  process.once('SIGINT', () => {
    void (server?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  });
  const prefix = freshPrefix('stress');
  const faults: Record<string, number> = {};
  console.log(`stress: ${seconds} s, ${args.clients} clients` +
    `${Number(args.processes) > 0 ? ` in ${args.processes} processes` : ''}, ${args.keys} keys, ` +
    `${server === undefined ? `${url} (shared: no faults)` : `own redis-server ${url} (${args.volatile ? 'no persistence' : 'appendfsync always'}) with faults`}`);
  try {
    const stopFaults = server === undefined ? async () => {} : injectFaults(server, faults);
    let run;
    try {
      run = await runWorkload({
        url, prefix, clients: Number(args.clients), keys: Number(args.keys),
        processes: Number(args.processes), durationMs: seconds * 1000, timeoutMs: TIMEOUT_MS,
        givenClients: args['given-clients'],
      });
    } finally {
      await stopFaults();
    }
    const checkStarted = performance.now();
    const report = checkHistory(run.history);
    const checkMs = performance.now() - checkStarted;
    const explored = (report.verdict?.keys ?? []).reduce((sum, k) => sum + k.explored, 0);
    // The span of the history itself: forking, connecting and collecting histories excluded.
    const loadMs = run.history.reduce((last, o) => Math.max(last, o.error === 'indeterminate' ? o.start : o.end), 0) -
      run.history.reduce((first, o) => Math.min(first, o.start), Infinity);
    console.log(`operations:  ${report.operations} in ${(loadMs / 1000).toFixed(1)} s ` +
      `(${Math.round(report.operations / (loadMs / 1000))}/s; ${(run.elapsedMs / 1000).toFixed(1)} s with setup)`);
    for (const [outcome, count] of Object.entries(report.outcomes).sort()) console.log(`  ${outcome.padEnd(40)} ${count}`);
    console.log(`faults:      ${Object.keys(faults).length === 0 ? 'none' : ''}`);
    for (const [kind, count] of Object.entries(faults)) console.log(`  ${kind.padEnd(40)} ${count}`);
    console.log(`check:       ${Math.round(checkMs)} ms, ${explored} search configurations, linearizable: ${report.linearizable}`);
    console.log(`indeterminate compareAndSets: ${report.indeterminateWrites.total}, ` +
      `${report.indeterminateWrites.seenToTakeEffect} of them later read (they took effect)`);
    console.log(`lost writes: ${report.lostWrites}`);
    console.log(`violations:  ${report.violations.length}`);
    for (const violation of report.violations) console.log(`  ${violation}`);
    return report.violations.length === 0 && report.linearizable === true ? 0 : 1;
  } finally {
    if (server !== undefined) {
      await server.stop();
    } else {
      const raw = new Redis(url);
      await deletePrefix(raw, prefix);
      await raw.quit();
    }
  }
}

main().then((code) => process.exit(code), (err: unknown) => {
  console.error('stress failed:', err);
  process.exit(2);
});
