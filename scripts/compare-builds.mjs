// Compares the compareAndSet hot path of two builds of this library in one process, interleaved
// rounds against one Redis, so machine noise falls on both alike. Throwaway-grade tooling for
// refactors that must leave the hot path unchanged (issue 9).
//
//   [ROUNDS=6] node scripts/compare-builds.mjs BUILD_DIR BUILD_DIR...
//   e.g. git worktree add ../old v0.1.0 && (cd ../old && npm run build:test)
//        node scripts/compare-builds.mjs ../old/build ./build
//
// Each build is connected to REDIS_URL (default redis://127.0.0.1:6379) under its own fresh prefix;
// a build that announces commits (watch) is measured with and without the announcement. The Redis
// time per call is the change of EVALSHA's `INFO commandstats` over each measurement: on a server
// other clients use too, it counts theirs as well, so point REDIS_URL at a private one for it.
// The build loaded first measures 2-4 us of client CPU per call cheaper, whichever it is (seen
// with two copies of one build): run both orders before reading a difference that small.
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const dirs = process.argv.slice(2);
if (dirs.length < 1) {
  console.error('usage: [ROUNDS=6] node scripts/compare-builds.mjs BUILD_DIR [BUILD_DIR...]');
  process.exit(2);
}
const ROUNDS = Number(process.env.ROUNDS ?? 6);
const URL_ = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const KEYS = 64;
const CALLS = 6000;
const payload = randomBytes(1024);
const load = async (dir) => (await import(pathToFileURL(resolve(dir, 'lib/index.js')).href)).RedisConsensus;
const run = randomBytes(4).toString('hex');

const prefixes = [];
const variants = [];
for (const [i, dir] of dirs.entries()) {
  const RedisConsensus = await load(dir);
  const prefix = `rcab-${run}-${i}:`;
  prefixes.push(prefix, `${prefix}announced:`);
  let quiet;
  try {
    // Builds with watch announce commits; measure them without the announcement too.
    quiet = await RedisConsensus.connect(URL_, { prefix, watch: { announce: false } });
    variants.push({ name: `${dir} (announce: false)`, store: quiet });
    variants.push({ name: dir, store: await RedisConsensus.connect(URL_, { prefix: `${prefix}announced:` }) });
  } catch {
    variants.push({ name: dir, store: await RedisConsensus.connect(URL_, { prefix }) });
  }
}
for (const v of variants) v.next = new Array(KEYS).fill(0n);
const { Redis } = await import('ioredis');
const raw = new Redis(URL_);

/** EVALSHA's calls and microseconds so far, from INFO commandstats. */
async function evalshaStats() {
  const line = (await raw.info('commandstats')).split('\r\n').find((l) => l.startsWith('cmdstat_evalsha:')) ?? '';
  return { calls: Number(/calls=(\d+)/.exec(line)?.[1] ?? 0), usec: Number(/usec=(\d+)/.exec(line)?.[1] ?? 0) };
}

async function measure(v, inFlight) {
  let issued = 0;
  const server0 = await evalshaStats();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  async function lane() {
    while (issued < CALLS) {
      const k = issued++ % KEYS;
      const seqno = v.next[k]++;
      const r = await v.store.compareAndSet(`k${k}`, seqno === 0n ? null : seqno - 1n, { seqno, data: payload });
      if (r !== 'Committed') throw new Error(`${v.name}: ${r}`);
    }
  }
  await Promise.all(Array.from({ length: inFlight }, lane));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const server1 = await evalshaStats();
  return { ops: CALLS / seconds, cpuUs: (cpu.user + cpu.system) / CALLS, serverUs: (server1.usec - server0.usec) / Math.max(1, server1.calls - server0.calls) };
}

const results = {};
for (let round = 0; round < ROUNDS; round++) {
  for (const inFlight of [1, 64]) {
    const order = round % 2 === 0 ? variants : [...variants].reverse();
    for (const v of order) {
      const m = await measure(v, inFlight);
      (results[`${v.name} @${inFlight}`] ??= []).push(m);
    }
  }
  process.stderr.write(`round ${round + 1}/${ROUNDS}\n`);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const width = Math.max(...variants.map((v) => v.name.length));
console.log(`${'build'.padEnd(width)}  in flight  ops/s (median)  cpu us/call (median)  redis us/call (median)`);
for (const [key, ms] of Object.entries(results).sort(([a], [b]) => Number(a.split(' @')[1]) - Number(b.split(' @')[1]))) {
  const [name, at] = key.split(' @');
  console.log(`${name.padEnd(width)}  ${at.padStart(9)}  ${Math.round(median(ms.map((m) => m.ops))).toString().padStart(14)}  ${median(ms.map((m) => m.cpuUs)).toFixed(1).padStart(20)}  ${median(ms.map((m) => m.serverUs)).toFixed(2).padStart(21)}`);
}
for (const v of variants) {
  for (let k = 0; k < KEYS; k++) await v.store.truncate(`k${k}`, v.next[k] - 1n).catch(() => {});
  await v.store.close();
}
// Clean every key this run wrote (all three prefixes).
for (const prefix of prefixes) {
  const stream = raw.scanStream({ match: `${prefix}*`, count: 1000 });
  for await (const keys of stream) if (keys.length > 0) await raw.del(...keys);
}
await raw.quit();
