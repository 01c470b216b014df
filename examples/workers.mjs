#!/usr/bin/env node
// Several processes agree on one log through one store.
//
// The parent forks WORKERS processes. Each appends APPENDS entries to the key `log` with
// compareAndSet: read the head, propose head + 1, and on ExpectationMismatch (another worker won
// that seqno) read again and retry. The parent then reads the log back and checks what the
// contract promises: seqnos 0, 1, 2 ... without gaps, every entry exactly once, each worker's
// entries in its own order. Finally it truncates all but the last 10 versions.
//
//   npm run build && REDIS_URL=redis://127.0.0.1:6379 node examples/workers.mjs [WORKERS] [APPENDS] [--keep]
//
// Everything goes under a fresh prefix, deleted at the end unless --keep is given (then look at it
// with the CLI: node dist/lib/cli/main.js --prefix <prefix> scan log).
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { CaSResult, ExternalError, RedisConsensus, SCAN_ALL } from 'redis-consensus';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const KEY = 'log';

if (process.argv[2] === '--worker') {
  await worker(process.argv[3], Number(process.argv[4]), process.argv[5]);
} else {
  await parent();
}

/** Appends `appends` entries, retrying each until it wins a seqno. */
async function worker(prefix, appends, name) {
  const consensus = await RedisConsensus.connect(url, { prefix });
  let mismatches = 0;
  try {
    for (let n = 0; n < appends; n++) {
      const data = Buffer.from(JSON.stringify({ worker: name, n }));
      for (;;) {
        const head = await consensus.head(KEY);
        const next = { seqno: head === null ? 0n : head.seqno + 1n, data };
        try {
          const result = await consensus.compareAndSet(KEY, head?.seqno ?? null, next);
          if (result === CaSResult.Committed) break;
          mismatches++;
        } catch (err) {
          // Indeterminate: the write may have committed. Never resend blindly; look at the log.
          if (!(err instanceof ExternalError) || err.determinate) throw err;
          const [landed] = await consensus.scan(KEY, next.seqno, 1);
          if (landed !== undefined && Buffer.compare(landed.data, data) === 0) break;
        }
      }
    }
  } finally {
    await consensus.close();
  }
  process.send?.({ name, mismatches });
}

async function parent() {
  const positional = process.argv.slice(2).filter((arg) => !arg.startsWith('--'));
  const workers = Number(positional[0] ?? 4);
  const appends = Number(positional[1] ?? 50);
  const keep = process.argv.includes('--keep');
  const prefix = `example-workers-${process.pid}-${Date.now().toString(36)}`;
  const started = performance.now();

  const reports = await Promise.all(Array.from({ length: workers }, (_, i) => new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['--worker', prefix, String(appends), `w${i}`]);
    let report;
    child.on('message', (message) => { report = message; });
    child.on('exit', (code) => (code === 0 ? resolve(report) : reject(new Error(`worker w${i} exited with ${code}`))));
  })));
  const elapsed = performance.now() - started;

  const consensus = await RedisConsensus.connect(url, { prefix });
  try {
    const log = await consensus.scan(KEY, 0, SCAN_ALL);
    const total = workers * appends;
    const problems = [];
    log.forEach((version, i) => {
      if (version.seqno !== BigInt(i)) problems.push(`position ${i} holds seqno ${version.seqno}`);
    });
    if (log.length !== total) problems.push(`${log.length} entries, expected ${total}`);
    const seen = new Map();
    for (const version of log) {
      const { worker: name, n } = JSON.parse(version.data.toString('utf8'));
      const expected = seen.get(name) ?? 0;
      if (n !== expected) problems.push(`${name}'s entry ${n} came where ${expected} was due`);
      seen.set(name, n + 1);
    }
    const mismatches = reports.reduce((sum, report) => sum + report.mismatches, 0);
    console.log(`${workers} workers appended ${log.length} entries in ${elapsed.toFixed(0)} ms ` +
      `(${mismatches} compare-and-set mismatches retried)`);
    for (const report of reports) console.log(`  ${report.name}: ${report.mismatches} mismatches`);
    const head = await consensus.head(KEY);
    if (head !== null && head.seqno >= 10n) {
      const deleted = await consensus.truncate(KEY, head.seqno - 9n);
      console.log(`truncated ${deleted} old versions; the last 10 remain`);
    }
    if (problems.length > 0) {
      console.error(`FAILED:\n  ${problems.slice(0, 10).join('\n  ')}`);
      process.exitCode = 1;
    } else {
      console.log('ok: one gapless log, every entry exactly once, each worker in order');
    }
  } finally {
    await consensus.close();
    if (keep) {
      console.log(`kept under prefix ${prefix}`);
    } else {
      await deletePrefix(prefix);
    }
  }
}

/** Removes the example's keys; the library has no delete, so this uses ioredis directly. */
async function deletePrefix(prefix) {
  const raw = new Redis(url);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await raw.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (keys.length > 0) await raw.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    await raw.quit();
  }
}
