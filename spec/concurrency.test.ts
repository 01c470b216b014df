/**
 * Many clients, each with its own connection, race on a few hot keys with a mixed workload; the
 * recorded history must be linearizable and keep the invariants (no seqno committed twice, no
 * acknowledged write lost, scans without holes or foreign data). About 10 s: 4 s of load on real
 * Redis in this process, then the check; 2 s from two forked processes; 1.5 s on ioredis-mock.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Redis } from 'ioredis';
import { deletePrefix, freshPrefix, REDIS_URL, realRedisAvailable } from './support/backends.js';
import { checkLinearizable } from './support/linearizability.js';
import { checkHistory, runWorkload } from './support/workload.js';
import type { HistoryReport } from './support/workload.js';

function summarise(label: string, report: HistoryReport, elapsedMs: number): void {
  const keys = report.verdict?.keys ?? [];
  const explored = keys.reduce((sum, k) => sum + k.explored, 0);
  console.log(`  ${label}: ${report.operations} operations checked on ${keys.length} keys ` +
    `(${Math.round(elapsedMs)} ms of load, ${explored} search configurations), ` +
    `${report.violations.length} violations; outcomes ${JSON.stringify(report.outcomes)}`);
}

function assertClean(report: HistoryReport): void {
  assert.equal(report.violations, [], report.violations.join('\n'));
  assert.is(report.linearizable, true);
  assert.is(report.lostWrites, 0);
  // The workload did race: writers lost some compare-and-sets and some commits went through.
  assert.ok((report.outcomes['compareAndSet:Committed'] ?? 0) > 0);
  assert.ok((report.outcomes['compareAndSet:ExpectationMismatch'] ?? 0) > 0);
}

test('32 connections racing on 4 keys of a real Redis leave a linearizable history', async () => {
  if (!(await realRedisAvailable())) return;
  const prefix = freshPrefix('concurrency');
  const raw = new Redis(REDIS_URL);
  try {
    const run = await runWorkload({ url: REDIS_URL, prefix, clients: 32, keys: 4, durationMs: 4000 });
    assert.ok(run.history.length > 1000, `only ${run.history.length} operations ran`);
    const report = checkHistory(run.history);
    summarise('real Redis, 32 connections', report, run.elapsedMs);
    assertClean(report);
  } finally {
    await deletePrefix(raw, prefix);
    await raw.quit();
  }
});

test('clients in two forked processes merge into one linearizable history', async () => {
  if (!(await realRedisAvailable())) return;
  const prefix = freshPrefix('concurrency');
  const raw = new Redis(REDIS_URL);
  try {
    // minRunMs: a forked worker that took long to start (a loaded machine) still records a history.
    const run = await runWorkload({ url: REDIS_URL, prefix, clients: 16, keys: 2, processes: 2, durationMs: 2000, minRunMs: 1500 });
    assert.equal(new Set(run.history.map((o) => o.client)).size, 16, 'every client reported its history');
    const report = checkHistory(run.history);
    summarise('real Redis, 16 connections in 2 processes', report, run.elapsedMs);
    assertClean(report);
  } finally {
    await deletePrefix(raw, prefix);
    await raw.quit();
  }
});

test('8 instances sharing one ioredis-mock data set leave a linearizable history', async () => {
  const run = await runWorkload({ mockPort: 47_100, prefix: freshPrefix('concurrency'), clients: 8, keys: 2, durationMs: 1500 });
  const report = checkHistory(run.history);
  summarise('ioredis-mock, 8 instances', report, run.elapsedMs);
  assertClean(report);

  // The same history with one acknowledged commit, later read by a head, turned into a mismatch:
  // the checker must now find it wrong (so a clean verdict above means something).
  const reads = new Set(run.history.flatMap((o) => (o.op === 'head' && o.result ? [o.result.data] : [])));
  const victim = run.history.findIndex((o) => o.op === 'compareAndSet' && o.result === 'Committed' && reads.has(o.next.data));
  assert.ok(victim >= 0);
  const tampered = run.history.map((o, i) => (i === victim ? { ...o, result: 'ExpectationMismatch' } as typeof o : o));
  const verdict = checkLinearizable(tampered);
  assert.is(verdict.linearizable, false);
});

test.run();
