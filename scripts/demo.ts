/**
 * The main job: simulated workers share a few keys and append to them with `append` (which owns
 * the read → compareAndSet → retry-on-mismatch loop, and resolves unknown outcomes), truncating
 * old versions as they go; then the run is checked against what the workers say they committed.
 *
 *   npm run demo                          # in-memory (ioredis-mock), workers in this process
 *   REDIS_URL=redis://127.0.0.1:6379 npm run demo   # real Redis, workers as separate processes
 *   npm run demo -- --workers 16 --keys 4 --appends 300 --keep 20
 */
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { RedisConsensus, SCAN_ALL } from '../lib/index.js';
import { deletePrefix } from '../spec/support/backends.js';

/** The options and defaults `npm run demo` checks before building (scripts/demo.mjs). */
const DEFAULTS = JSON.parse(readFileSync(new URL('../../scripts/demo-options.json', import.meta.url), 'utf8')) as
  Record<'workers' | 'keys' | 'appends' | 'keep', number>;
const { values: args } = parseArgs({
  options: {
    workers: { type: 'string', default: String(DEFAULTS.workers) },
    keys: { type: 'string', default: String(DEFAULTS.keys) },
    appends: { type: 'string', default: String(DEFAULTS.appends) },
    keep: { type: 'string', default: String(DEFAULTS.keep) },
    worker: { type: 'string' },
    prefix: { type: 'string' },
  },
});

const settings = {
  workers: positive(args.workers!, 'workers'),
  keys: positive(args.keys!, 'keys'),
  appends: positive(args.appends!, 'appends'),
  keep: positive(args.keep!, 'keep'),
};
const url = process.env.REDIS_URL;
const MOCK_PORT = 46379;

/** One commit a worker made: it owns `seqno` of `key`, with this payload. */
interface Commit {
  key: string;
  seqno: string;
  data: string;
}

interface WorkerReport {
  worker: number;
  commits: Commit[];
  mismatches: number;
}

function positive(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) {
    console.error(`--${name} must be a positive integer; got ${text}`);
    process.exit(2);
  }
  return value;
}

const keyName = (i: number): string => `demo-key-${i}`;

/** One worker: `appends` commits, each to a random key; `append` retries lost races. */
async function work(consensus: RedisConsensus, worker: number, onCommit: () => void): Promise<WorkerReport> {
  const report: WorkerReport = { worker, commits: [], mismatches: 0 };
  for (let n = 0; n < settings.appends; n++) {
    const key = keyName(Math.floor(Math.random() * settings.keys));
    const data = `worker ${worker} append ${n}`;
    const appended = await consensus.append(key, () => Buffer.from(data));
    if (!appended.committed) throw new Error('the update never stops, so every append commits');
    const { seqno } = appended.head;
    report.mismatches += appended.attempts - 1;
    report.commits.push({ key, seqno: seqno.toString(), data });
    onCommit();
    if (seqno >= BigInt(settings.keep) && seqno % 8n === 0n) {
      await consensus.truncate(key, seqno - BigInt(settings.keep) + 1n);
    }
    // ioredis-mock answers without touching the event loop; let the progress timer run.
    await new Promise((resolve) => setImmediate(resolve));
  }
  return report;
}

/** Checks the store against what the workers committed; returns the problems found. */
async function check(consensus: RedisConsensus, reports: WorkerReport[]): Promise<string[]> {
  const problems: string[] = [];
  const byKey = new Map<string, Commit[]>();
  for (const commit of reports.flatMap((report) => report.commits)) {
    byKey.set(commit.key, [...(byKey.get(commit.key) ?? []), commit]);
  }
  for (const [key, commits] of [...byKey].sort(([a], [b]) => a.localeCompare(b))) {
    commits.sort((a, b) => (BigInt(a.seqno) < BigInt(b.seqno) ? -1 : 1));
    const seqnos = commits.map((commit) => commit.seqno);
    if (new Set(seqnos).size !== seqnos.length) problems.push(`${key}: a seqno was committed twice`);
    if (seqnos.some((seqno, i) => seqno !== String(i))) problems.push(`${key}: committed seqnos are not 0..${seqnos.length - 1}`);
    const stored = await consensus.scan(key, 0n, SCAN_ALL);
    const expected = commits.slice(commits.length - stored.length);
    const matches = stored.length > 0 && stored.every((version, i) =>
      version.seqno.toString() === expected[i]!.seqno && Buffer.from(version.data).toString() === expected[i]!.data);
    if (!matches) problems.push(`${key}: stored history differs from the workers' commits`);
    // Every 8th commit truncates to the last `keep`: between `keep` and `keep + 7` stay (all of a short history).
    const least = Math.min(settings.keep, commits.length);
    if (stored.length < least || stored.length > settings.keep + 7) {
      problems.push(`${key}: ${stored.length} versions kept, expected ${least} to ${settings.keep + 7}`);
    }
    const head = await consensus.head(key);
    const last = commits[commits.length - 1]!;
    if (head?.seqno.toString() !== last.seqno || Buffer.from(head.data).toString() !== last.data) {
      problems.push(`${key}: head is not the last commit`);
    }
    console.log(`  ${key}: ${commits.length} commits, head SeqNo(${head?.seqno}), ${stored.length} versions kept`);
  }
  const listed: string[] = [];
  for await (const key of consensus.listKeys()) listed.push(key);
  if (listed.sort().join() !== [...byKey.keys()].sort().join()) problems.push('listKeys differs from the keys written');
  return problems;
}

async function runWorkerProcess(worker: number, prefix: string): Promise<void> {
  const consensus = await RedisConsensus.connect(url, { prefix });
  // Ready: connected. The parent starts every worker at once, and its clock, when all are.
  const go = new Promise((resolve) => process.once('message', resolve));
  process.send!({ ready: true });
  await go;
  const report = await work(consensus, worker, () => process.send!({ progress: 1 }));
  await consensus.close();
  await new Promise<void>((resolve) => process.send!({ report }, () => resolve()));
}

async function main(): Promise<void> {
  const prefix = args.prefix ?? `demo-${process.pid}-${Date.now().toString(36)}`;
  if (args.worker !== undefined) return runWorkerProcess(Number(args.worker), prefix);

  const where = url === undefined ? 'in-memory ioredis-mock (set REDIS_URL for a real Redis)' : `${url}, one process per worker`;
  console.log(`redis-consensus demo: ${settings.workers} workers × ${settings.appends} appends over ` +
    `${settings.keys} keys; every 8th commit of a key truncates it to its last ${settings.keep} versions, so a key keeps ` +
    `${settings.keep} to ${settings.keep + 7}; store: ${where}; prefix ${prefix}`);

  let commits = 0;
  let started = 0;
  let progress: ReturnType<typeof setInterval> | undefined;
  /** Called once every worker is ready (processes started and connected): rates count from here. */
  const startClock = (): void => {
    started = Date.now();
    progress = setInterval(() => {
      const seconds = (Date.now() - started) / 1000;
      console.log(`  ... ${commits} / ${settings.workers * settings.appends} commits (${Math.round(commits / seconds)}/s)`);
    }, 1000);
  };

  const checker = url === undefined
    ? new RedisConsensus(new RedisMock({ port: MOCK_PORT }), { prefix })
    : await RedisConsensus.connect(url, { prefix });
  let reports: WorkerReport[];
  try {
    if (url === undefined) {
      // Separate mock instances on one port share one data set, like separate connections.
      const stores = Array.from({ length: settings.workers }, () => new RedisConsensus(new RedisMock({ port: MOCK_PORT }), { prefix }));
      startClock();
      reports = await Promise.all(stores.map((consensus, worker) => work(consensus, worker, () => commits++)));
    } else {
      const children = Array.from({ length: settings.workers }, (_, worker) =>
        fork(process.argv[1]!, [...process.argv.slice(2), '--worker', String(worker), '--prefix', prefix]));
      let ready = 0;
      reports = await Promise.all(children.map((child, worker) =>
        new Promise<WorkerReport>((resolve, reject) => {
          let report: WorkerReport | undefined;
          child.on('message', (message: { ready?: boolean; progress?: number; report?: WorkerReport }) => {
            if (message.ready && ++ready === children.length) {
              startClock();
              for (const each of children) each.send('go');
            }
            if (message.progress) commits += message.progress;
            if (message.report) report = message.report;
          });
          child.on('error', reject);
          child.on('exit', (code) => (report && code === 0 ? resolve(report) : reject(new Error(`worker ${worker} exited with ${code}`))));
        })));
    }
    clearInterval(progress);
    const seconds = (Date.now() - started) / 1000;
    const mismatches = reports.reduce((sum, report) => sum + report.mismatches, 0);
    console.log(`done: ${commits} commits in ${seconds.toFixed(1)} s (${Math.round(commits / seconds)}/s, counted from when ` +
      `every worker was ready), ${mismatches} extra attempts by append (lost races, unknown outcomes resolved)`);
    console.log('check:');
    const problems = await check(checker, reports);
    if (problems.length > 0) {
      for (const problem of problems) console.log(`  FAIL ${problem}`);
      process.exitCode = 1;
    } else {
      console.log('  OK: every seqno committed exactly once, each history matches the commits, each head is the last commit, ' +
        'each key keeps what the truncation rule leaves');
    }
  } finally {
    clearInterval(progress);
    if (url !== undefined) await cleanUp(prefix);
    await checker.close();
  }
}

/** Deletes what the demo wrote to a real Redis. */
async function cleanUp(prefix: string): Promise<void> {
  const raw = new Redis(url!);
  await deletePrefix(raw, prefix);
  await raw.quit();
}

await main();
