/**
 * Bench family `follow` (issue 21): `npm run bench -- --only follow [--quick]`, or
 * `node build/scripts/bench/follow.js [--quick]`. On a redis-server of its own (ports 7876-7879).
 *
 * 1. Notice latency: from the writer's compareAndSet reply to a watch (and a follower) in another
 *    store yielding that version, with announcements that carry the payload (1 KiB), and with
 *    plain ones (`carryMaxBytes: 0`, the watcher reads the head) for comparison; against the p50
 *    of a compareAndSet round trip measured in the same run. Target: carried p50 <= 0.5x.
 * 2. Cost of carrying on compareAndSet (1 KiB, one key per case, 1 and 16 in flight, interleaved):
 *    carried with the legacy twin (the default), carried only, plain (the baseline: the
 *    announcement as before), no announcement; with no subscriber, and with a watch on every key.
 * 3. A follower from seqno 0 of a key with 20,000 versions, while one writer commits 1 KiB
 *    versions back to back: how long it takes to catch up, and the largest lag (versions committed
 *    but not yet yielded) sampled every ms once caught up.
 */
import { setMaxListeners } from 'node:events';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { RedisConsensus } from '../../lib/index.js';
import type { RedisConsensusOptions } from '../../lib/index.js';
import { measureGroup, num, percentile, ratio, sleep, startServer, table } from '../bench-support.js';
import type { Case } from '../bench-support.js';

const PAYLOAD = randomBytes(1024);

function p50(samples: number[]): number {
  return percentile(Float64Array.from(samples).sort(), 0.5);
}
function p99(samples: number[]): number {
  return percentile(Float64Array.from(samples).sort(), 0.99);
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { quick: { type: 'boolean' }, only: { type: 'string' }, mock: { type: 'boolean' } }, strict: false });
  if (values.mock === true) {
    console.log('follow: skipped with --mock (pub/sub latency and Redis cost mean nothing on ioredis-mock)');
    return;
  }
  const quick = values.quick === true;
  const server = await startServer(7876, 7879);
  const stores: RedisConsensus[] = [];
  const open = async (options: RedisConsensusOptions = {}): Promise<RedisConsensus> => {
    const store = await RedisConsensus.connect(server.url, { prefix: 'bench-follow', ...options });
    stores.push(store);
    return store;
  };
  try {
    console.log(`\n## follow (issue 21), Redis at ${server.url}, 1 KiB payloads${quick ? ', --quick' : ''}\n`);
    await noticeLatency(open, quick ? 300 : 1000);
    await carryCost(open, quick ? 2000 : 10_000);
    await followerLag(open, quick ? 5000 : 20_000, quick ? 2000 : 5000);
  } finally {
    for (const store of stores) await store.close();
    await server.stop();
  }
}

type Open = (options?: RedisConsensusOptions) => Promise<RedisConsensus>;

/** From the writer's reply to the watch (and follower) yielding the version. */
async function noticeLatency(open: Open, commits: number): Promise<void> {
  const watcher = await open();
  const rows: string[][] = [];
  // The strictest baseline: a compareAndSet round trip with nothing else in this process, paced
  // like the commits below (the round trips measured there also pay for the consumers' work).
  const alone = await open();
  const bare: number[] = [];
  for (let i = 0; i < commits; i++) {
    const started = performance.now();
    await alone.compareAndSet('latency-alone', i === 0 ? null : BigInt(i - 1), { seqno: BigInt(i), data: PAYLOAD });
    bare.push(performance.now() - started);
    await sleep(1);
  }
  const bareP50 = p50(bare);
  let casP50 = NaN;
  const results: Record<string, number> = {};
  for (const [label, writerOptions] of [['carried', {}], ['plain (carryMaxBytes 0)', { watch: { carryMaxBytes: 0 } }]] as const) {
    const writer = await open(writerOptions);
    const key = `latency-${label.split(' ')[0]}`;
    await writer.compareAndSet(key, null, { seqno: 0n, data: PAYLOAD });
    await watcher.head(key);
    const replied = new Map<bigint, number>();
    const watchAfter: number[] = [];
    const followAfter: number[] = [];
    const rtts: number[] = [];
    const ac = new AbortController();
    setMaxListeners(0, ac.signal);
    const consume = async (versions: AsyncIterable<{ seqno: bigint }>, into: number[]): Promise<void> => {
      for await (const version of versions) {
        const at = replied.get(version.seqno);
        const now = performance.now();
        if (at !== undefined) into.push(now - at);
        else if (version.seqno > 0n) {
          // Yielded before the reply came in: wait for it to know the difference (negative).
          const early = now;
          void (async () => {
            while (!replied.has(version.seqno)) await sleep(0);
            into.push(early - replied.get(version.seqno)!);
          })();
        }
        if (version.seqno === BigInt(commits)) return;
      }
    };
    const watching = consume(watcher.watch(key, { signal: ac.signal }), watchAfter);
    const following = consume(watcher.follow(key, { from: 1, signal: ac.signal }), followAfter);
    await sleep(200);
    for (let i = 1; i <= commits; i++) {
      const seqno = BigInt(i);
      const started = performance.now();
      await writer.compareAndSet(key, seqno - 1n, { seqno, data: PAYLOAD });
      const now = performance.now();
      rtts.push(now - started);
      replied.set(seqno, now);
      // Let the notice land before the next commit: latency, not throughput.
      await sleep(1);
    }
    await Promise.race([Promise.all([watching, following]), sleep(10_000)]);
    ac.abort();
    const rtt = p50(rtts);
    if (label === 'carried') casP50 = rtt;
    results[label] = p50(watchAfter);
    rows.push([label, num(rtt * 1000), num(p50(watchAfter) * 1000), num(p99(watchAfter) * 1000), ratio(p50(watchAfter), rtt),
      num(p50(followAfter) * 1000), ratio(p50(followAfter), rtt), String(watchAfter.length), String(followAfter.length)]);
  }
  console.log('notice latency: from the writer\'s reply to the version yielded in another store (µs)');
  console.log(table(['announcement', 'CaS p50', 'watch p50', 'watch p99', 'watch/CaS', 'follow p50', 'follow/CaS', 'n watch', 'n follow'], rows));
  const carried = results['carried']!;
  console.log(`compareAndSet round trip alone (no consumer in the process): p50 ${num(bareP50 * 1000)} µs`);
  console.log(`target: carried watch p50 <= 0.5x a compareAndSet round trip: ${ratio(carried, casP50)} of the round trip ` +
    `measured alongside (${carried <= 0.5 * casP50 ? 'MET' : 'NOT MET'}), ${ratio(carried, bareP50)} of the one measured ` +
    `alone (${carried <= 0.5 * bareP50 ? 'MET' : 'NOT MET'})\n`);
}

/** compareAndSet with and without the carried payload, no subscriber and with a watch per key. */
async function carryCost(open: Open, calls: number): Promise<void> {
  const variants: Array<[string, RedisConsensusOptions]> = [
    ['plain (baseline)', { watch: { carryMaxBytes: 0 } }],
    ['carried + legacy (default)', {}],
    ['carried only', { watch: { legacyAnnouncements: false } }],
    ['no announcement', { watch: { announce: false } }],
  ];
  const writers = await Promise.all(variants.map(([, options]) => open(options)));
  const watcher = await open();
  const rows: string[][] = [];
  for (const subscribed of [false, true]) {
    const ac = new AbortController();
    setMaxListeners(0, ac.signal);
    const keys = variants.map((_, i) => `cost-${subscribed ? 'sub' : 'nosub'}-${i}`);
    const watches: Promise<void>[] = [];
    if (subscribed) {
      // A watch on every key written, so that every announcement has a subscriber to reach.
      for (const key of keys) {
        for (const inFlight of [1, 16]) {
          for (let slot = 0; slot < inFlight; slot++) {
            watches.push((async () => {
              for await (const _ of watcher.watch(`${key}-${inFlight}-${slot}`, { signal: ac.signal })) { /* drained */ }
            })().catch(() => undefined));
          }
        }
      }
      await sleep(300);
    }
    for (const inFlight of [1, 16]) {
      // One key per slot of the loop, so that calls in flight never race: call n commits seqno n
      // on key n % inFlight, on top of n - inFlight (calls reach the connection in order).
      const cases: Case[] = variants.map(([name], i) => {
        let next = 0n;
        return {
          name, warmup: 200, calls,
          call: async () => {
            const seqno = next++;
            const slot = seqno % BigInt(inFlight);
            const result = await writers[i]!.compareAndSet(`${keys[i]}-${inFlight}-${slot}`,
              seqno < BigInt(inFlight) ? null : seqno - BigInt(inFlight), { seqno, data: PAYLOAD });
            if (result !== 'Committed') throw new Error(`bench: ${name} did not commit ${seqno}`);
          },
        };
      });
      const stats = await measureGroup(inFlight, cases, 5);
      const base = stats.get(variants[0]![0])!;
      for (const [name] of variants) {
        const s = stats.get(name)!;
        rows.push([`${name}${subscribed ? ', watched' : ''}`, String(inFlight), num(s.opsPerSec), num(s.p50us), num(s.p99us),
          ratio(s.p50us, base.p50us), ratio(base.opsPerSec, s.opsPerSec)]);
      }
    }
    ac.abort();
    await Promise.all(watches);
  }
  console.log('compareAndSet cost of carrying the payload (1 KiB), interleaved, ratios against the plain announcement');
  console.log(table(['announcement', 'in flight', 'ops/s', 'p50 µs', 'p99 µs', 'p50 ratio', 'time/op ratio'], rows));
  console.log('');
}

/** A follower from seqno 0 catching up with, then keeping up with, one writer at full speed. */
async function followerLag(open: Open, history: number, runMs: number): Promise<void> {
  const writer = await open();
  const follower = await open();
  const key = 'lag';
  let head = -1n;
  for (let i = 0; i < history; i++) {
    await writer.compareAndSet(key, head < 0n ? null : head, { seqno: head + 1n, data: PAYLOAD });
    head++;
  }
  const ac = new AbortController();
  let yielded = -1n;
  let count = 0;
  const started = performance.now();
  let caughtUpMs: number | undefined;
  const following = (async () => {
    for await (const version of follower.follow(key, { from: 0, signal: ac.signal })) {
      if (version.seqno !== yielded + 1n) throw new Error(`follower yielded ${version.seqno} after ${yielded}`);
      yielded = version.seqno;
      count++;
      if (caughtUpMs === undefined && yielded >= head) caughtUpMs = performance.now() - started;
    }
  })();
  let writing = true;
  let commits = 0;
  const writerLoop = (async () => {
    while (writing) {
      await writer.compareAndSet(key, head, { seqno: head + 1n, data: PAYLOAD });
      head++;
      commits++;
    }
  })();
  let maxLag = 0n;
  const lags: number[] = [];
  const until = performance.now() + runMs;
  while (performance.now() < until) {
    await sleep(1);
    if (caughtUpMs === undefined) continue;
    const lag = head - yielded;
    lags.push(Number(lag));
    if (lag > maxLag) maxLag = lag;
  }
  writing = false;
  await writerLoop;
  const finalHead = head;
  const deadline = performance.now() + 5000;
  while (yielded < finalHead && performance.now() < deadline) await sleep(1);
  ac.abort();
  await following.catch((err: unknown) => {
    console.log(`follower failed: ${String(err)}`);
  });
  const seconds = runMs / 1000;
  console.log(`follower from seqno 0 (${history} versions stored) with one writer at full speed for ${seconds} s:`);
  console.log(table(['measure', 'value'], [
    ['writer commits/s', num(commits / seconds)],
    ['caught up after (ms)', caughtUpMs === undefined ? 'never' : num(caughtUpMs)],
    ['versions yielded', num(count)],
    ['lag once caught up: p50 / p99 / max (versions)', `${num(p50(lags))} / ${num(p99(lags))} / ${maxLag}`],
    ['ended at the final head', String(yielded === finalHead)],
  ]));
  console.log('');
}

if (process.argv[1]?.endsWith('/bench/follow.js')) await run(process.argv.slice(2));
