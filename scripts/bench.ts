/**
 * `npm run bench`: throughput and latency of every operation, against baselines measured in the
 * same run, plus scale (big histories, big truncates, many keys) and memory per version.
 *
 *   npm run bench                      # a redis-server of its own (ports 7400-7449), or REDIS_URL
 *   npm run bench -- --quick           # a short run (< 60 s)
 *   npm run bench -- --mock            # ioredis-mock (no scale or memory sections)
 *   npm run bench -- --json out.json   # also write every figure as JSON
 *   npm run bench -- --help            # this text
 *   npm run bench -- --only cas,append # some families only, each one file of scripts/bench/:
 *                                      # cas (sections focus, operations, breakdown), sizes
 *                                      # (history, truncate, listKeys, memory), append, watch;
 *                                      # not in the default run: peers (etcd side by side),
 *                                      # scale (1M versions/keys, 100k watches), lease, follow
 *
 * Every operation runs through one RedisConsensus with one connection, as a real worker would;
 * "in flight" is how many calls that worker has outstanding at once (a closed loop). Numbers on a
 * shared machine are noisy: compare the ratios within one run, which share the same noise.
 */
import { writeFileSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { run as runLease } from './bench/lease.js';
import { run as runFollow } from './bench/follow.js';
import { deletePrefix, num } from './bench-support.js';
import { args, closeSharedRig, gc, MOCK, OPS, PAYLOAD, progress, QUICK, report, RUN_PREFIX, say, SECTIONS, sharedRig } from './bench/context.js';
import { run as runAppend } from './bench/append.js';
import { run as runCas } from './bench/cas.js';
import { run as runPeers } from './bench/peers.js';
import { run as runScale } from './bench/scale.js';
import { run as runSizes } from './bench/sizes.js';
import { run as runWatch } from './bench/watch.js';

/** Families that start their own redis-server and use no shared one. */
const OWN_SERVERS: ReadonlySet<string> = new Set(['scale']);

if (args.help === true) {
  // The usage is this file's header comment.
  console.log(readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0]!.replace(/^\/\*\*\n|^ \* ?/gm, ''));
  process.exit(0);
}

async function main(): Promise<void> {
  const started = performance.now();
  const argv = process.argv.slice(2);
  // Families with servers of their own (scale: ports 7720-7739) need no shared one (ports 7400-7449).
  const r = [...SECTIONS].every((section) => OWN_SERVERS.has(section)) ? undefined : await sharedRig();
  const prefix = RUN_PREFIX;
  const serverInfo = MOCK ? 'ioredis-mock' : r === undefined ? 'servers of its own'
    : `redis ${(await r.raw.info('server')).match(/redis_version:(\S+)/)?.[1]}`;
  report.meta = {
    date: new Date().toISOString(), node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model,
    loadavgAtStart: loadavg(), server: serverInfo,
    where: MOCK ? 'ioredis-mock' : r === undefined ? 'per family' : r.server ? `own redis-server on port ${r.server.port}` : 'REDIS_URL',
    quick: QUICK, payloadBytes: PAYLOAD.length, callsPerCell: OPS,
  };
  say(`# redis-consensus bench: ${serverInfo} (${String((report.meta as Record<string, unknown>).where)}), ` +
    `node ${process.version}, ${cpus().length} cpus, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}` +
    `${QUICK ? ', --quick' : ''}`);
  say();
  try {
    // Each family starts from a collected heap, so none pays for the garbage of the one before;
    // the compare-and-set family runs first, in a process that has done little else.
    gc();
    if (SECTIONS.has('focus') || SECTIONS.has('operations') || SECTIONS.has('breakdown') || SECTIONS.has('attribution')) await runCas(argv);
    gc();
    if (['history', 'truncate', 'listKeys', 'memory'].some((section) => SECTIONS.has(section))) await runSizes(argv);
    gc();
    if (SECTIONS.has('append')) await runAppend(argv);
    if (SECTIONS.has('watch')) await runWatch(argv);
    if (SECTIONS.has('peers')) await runPeers(argv);
    // Bounded-at-scale runs (1M versions and keys, 100k watches): their own server, only when named.
    if (SECTIONS.has('scale')) await runScale(argv);
    if (SECTIONS.has('lease')) await runLease(argv);
    if (SECTIONS.has('follow')) await runFollow(argv);
    if (MOCK) {
      say('ioredis-mock runs every script in a fresh JavaScript Lua VM: its figures check that the bench');
      say('runs, and say nothing about Redis. Targets are judged on a real Redis only.');
    }
  } finally {
    progress('cleaning up');
    await closeSharedRig((rig) => deletePrefix(rig.raw, prefix));
  }
  (report.meta as Record<string, unknown>).seconds = (performance.now() - started) / 1000;
  (report.meta as Record<string, unknown>).loadavgAtEnd = loadavg();
  if (args.json !== undefined) writeFileSync(String(args.json), `${JSON.stringify(report, null, 2)}\n`);
  say(`done in ${num((performance.now() - started) / 1000, 1)} s${args.json ? `; JSON in ${String(args.json)}` : ''}`);
}

main().then(() => process.exit(0), (err: unknown) => {
  say(`bench failed: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
