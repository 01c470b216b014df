/**
 * Metrics and health: the observers of lib/metrics.ts count what the store really did (on
 * ioredis-mock), and `ping` answers or fails as determinate.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as promClient from 'prom-client';
import { Redis } from 'ioredis';
import RedisMock from 'ioredis-mock';
import {
  CaSResult, combineObservers, countingObserver, ExternalError, prometheusObserver, RedisConsensus,
} from '../lib/index.js';
import type { Observer, OperationEvent } from '../lib/index.js';
import { backends, freshPrefix, mockBackend } from './support/backends.js';
import { captureWarnings } from './support/warnings.js';

const bytes = (text: string): Buffer => Buffer.from(text, 'utf8');

/** A value of one sample of a metric in `registry`, or 0 when it has none. */
async function sample(registry: promClient.Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  if (metric === undefined) throw new Error(`no metric ${name}`);
  const match = metric.values.find((value) =>
    Object.entries(labels).every(([label, expected]) => String(value.labels[label]) === expected) &&
    ((value as { metricName?: string }).metricName ?? name) === (name.endsWith('_seconds') ? `${name}_count` : name));
  return match?.value ?? 0;
}

/** Runs a known workload: 2 commits (5 + 3 bytes), 1 mismatch, head, scan, truncate of 1, listKeys. */
async function workload(consensus: RedisConsensus): Promise<void> {
  assert.is(await consensus.compareAndSet('a', null, { seqno: 1n, data: bytes('hello') }), CaSResult.Committed);
  assert.is(await consensus.compareAndSet('a', 1n, { seqno: 2n, data: bytes('abc') }), CaSResult.Committed);
  assert.is(await consensus.compareAndSet('a', 1n, { seqno: 3n, data: bytes('zz') }), CaSResult.ExpectationMismatch);
  assert.is((await consensus.head('a'))?.seqno, 2n);
  assert.is((await consensus.scan('a', 0n, 10)).length, 2);
  assert.is(await consensus.truncate('a', 2n), 1);
  const keys: string[] = [];
  for await (const key of consensus.listKeys()) keys.push(key);
  assert.equal(keys, ['a']);
  // A determinate failure: truncating above the head.
  const err = await consensus.truncate('a', 9n).then(() => undefined, (e: unknown) => e);
  assert.instance(err, ExternalError);
  // Invalid arguments never reach Redis and are not counted.
  await consensus.head(42 as unknown as string).catch(() => undefined);
}

const counting = suite('countingObserver');

for (const backend of await backends()) {
  counting(`counts every operation, its outcome, bytes and versions, on ${backend.name}`, async () => {
    const observer = countingObserver();
    const store = await backend.store({ observer });
    try {
      await workload(store.consensus);
      const { counts } = observer;
      assert.equal(counts.compareAndSet, {
        started: 3, ok: 2, mismatch: 1, determinate: 0, indeterminate: 0,
        bytesWritten: 8, bytesRead: 0, count: 2, totalMs: counts.compareAndSet.totalMs,
        attempts: 3, mismatches: 1, waitedMs: 0,
      });
      assert.ok(counts.compareAndSet.totalMs > 0);
      assert.is(counts.head.started, 1);
      assert.is(counts.head.ok, 1);
      assert.is(counts.head.bytesRead, 3);
      assert.is(counts.scan.bytesRead, 8);
      assert.is(counts.scan.count, 2);
      assert.is(counts.truncate.started, 2);
      assert.is(counts.truncate.ok, 1);
      assert.is(counts.truncate.determinate, 1);
      assert.is(counts.truncate.count, 1);
      assert.is(counts.listKeys.ok, 1);
      assert.is(counts.listKeys.count, 1);
      observer.reset();
      assert.is(observer.counts.compareAndSet.started, 0);
    } finally {
      await store.dispose();
    }
  });
}

counting('an indeterminate write is counted as such', async () => {
  const observer = countingObserver();
  // A client whose scripts hang: the write is sent and its reply never comes.
  const client = new RedisMock({ port: 39_001 });
  const consensus = new RedisConsensus(client, { prefix: freshPrefix('metrics'), observer, timeoutMs: 50 });
  Object.assign(client, { redisConsensus_compareAndSet_v1: () => new Promise(() => {}) });
  try {
    const err = await consensus.compareAndSet('k', null, { seqno: 1n, data: bytes('x') })
      .then(() => undefined, (e: unknown) => e);
    assert.instance(err, ExternalError);
    assert.is((err as ExternalError).determinate, false);
    assert.is(observer.counts.compareAndSet.indeterminate, 1);
    assert.is(observer.counts.compareAndSet.bytesWritten, 0);
  } finally {
    await consensus.close();
  }
});

counting('an append that lost races reports its attempts, lost races and waits; each attempt is a compareAndSet', async () => {
  const observer = countingObserver();
  const backend = mockBackend();
  const store = await backend.store({ observer });
  const peer = await backend.peer(store);
  try {
    await store.consensus.append('k', () => bytes('first'));
    let losses = 0;
    const appended = await store.consensus.append('k', async (head) => {
      if (losses < 2) {
        losses++;
        await peer.compareAndSet('k', head!.seqno, { seqno: head!.seqno + 1n, data: bytes(`peer ${losses}`) });
      }
      return bytes('mine');
    }, { backoff: { minDelayMs: 20, maxDelayMs: 20 } });
    assert.is(appended.attempts, 3);
    const { append, compareAndSet, head } = observer.counts;
    assert.is(append.started, 2);
    assert.is(append.ok, 2);
    assert.is(append.count, 2);
    assert.is(append.attempts, 1 + 3);
    assert.is(append.mismatches, 2);
    // The second loss in a row backs off at least half the ceiling (20 ms).
    assert.ok(append.waitedMs >= 9, `waited ${append.waitedMs} ms`);
    assert.is(append.bytesWritten, 5 + 4);
    assert.is(compareAndSet.started, 4);
    assert.is(compareAndSet.mismatch, 2);
    assert.is(head.started, 1, 'only the very first append read the head');
  } finally {
    await peer.close();
    await store.dispose();
  }
});

counting.run();

const prometheus = suite('prometheusObserver');

prometheus('registers documented metrics whose values match the operations done', async () => {
  const registry = new promClient.Registry();
  const store = await mockBackend().store({ observer: prometheusObserver(promClient, { registry }) });
  try {
    await workload(store.consensus);
    const names = (await registry.getMetricsAsJSON()).map((m) => m.name).sort();
    assert.equal(names, [
      'redis_consensus_append_attempts', 'redis_consensus_bytes_read_total', 'redis_consensus_bytes_written_total',
      'redis_consensus_mismatches_total', 'redis_consensus_operation_duration_seconds',
      'redis_consensus_operations_failed_total', 'redis_consensus_operations_started_total',
      'redis_consensus_operations_succeeded_total', 'redis_consensus_versions_truncated_total',
      'redis_consensus_wait_seconds_total',
    ]);
    const value = (name: string, labels: Record<string, string>): Promise<number> =>
      sample(registry, `redis_consensus_${name}`, labels);
    assert.is(await value('operations_started_total', { operation: 'compareAndSet' }), 3);
    assert.is(await value('operations_succeeded_total', { operation: 'compareAndSet' }), 3);
    assert.is(await value('mismatches_total', { operation: 'compareAndSet' }), 1);
    assert.is(await value('bytes_written_total', { operation: 'compareAndSet' }), 8);
    assert.is(await value('bytes_read_total', { operation: 'head' }), 3);
    assert.is(await value('bytes_read_total', { operation: 'scan' }), 8);
    assert.is(await value('operations_started_total', { operation: 'head' }), 1);
    assert.is(await value('operations_started_total', { operation: 'truncate' }), 2);
    assert.is(await value('operations_succeeded_total', { operation: 'truncate' }), 1);
    assert.is(await value('operations_failed_total', { operation: 'truncate', outcome: 'determinate' }), 1);
    assert.is(await value('operations_failed_total', { operation: 'truncate', outcome: 'indeterminate' }), 0);
    assert.is(await value('versions_truncated_total', { operation: 'truncate' }), 1);
    assert.is(await value('operations_succeeded_total', { operation: 'listKeys' }), 1);
    assert.is(await value('operation_duration_seconds', { operation: 'compareAndSet', outcome: 'ok' }), 2);
    assert.is(await value('operation_duration_seconds', { operation: 'compareAndSet', outcome: 'mismatch' }), 1);
    assert.is(await value('operation_duration_seconds', { operation: 'truncate', outcome: 'determinate' }), 1);
    const text = await registry.metrics();
    assert.match(text, '# HELP redis_consensus_operations_failed_total');
    assert.match(text, 'redis_consensus_operation_duration_seconds_bucket{le="0.0001"');
  } finally {
    await store.dispose();
  }
});

prometheus('append contention: attempts per append, lost races and waiting time', async () => {
  const registry = new promClient.Registry();
  const backend = mockBackend();
  const store = await backend.store({ observer: prometheusObserver(promClient, { registry }) });
  const peer = await backend.peer(store);
  try {
    await store.consensus.append('k', () => bytes('a'));
    await peer.compareAndSet('k', 0n, { seqno: 1n, data: bytes('peer') });
    await store.consensus.append('k', () => bytes('b'));
    const value = (name: string, labels: Record<string, string>): Promise<number> =>
      sample(registry, `redis_consensus_${name}`, labels);
    assert.is(await value('mismatches_total', { operation: 'append' }), 1);
    assert.is(await value('mismatches_total', { operation: 'compareAndSet' }), 1);
    const attempts = (await registry.getMetricsAsJSON()).find((m) => m.name === 'redis_consensus_append_attempts');
    const part = (suffix: string): number | undefined => attempts?.values
      .find((v) => (v as { metricName?: string }).metricName === `redis_consensus_append_attempts_${suffix}`)?.value;
    assert.is(part('sum'), 1 + 2, 'one attempt, then two (a lost race)');
    assert.is(part('count'), 2);
    assert.is(await value('operations_succeeded_total', { operation: 'append' }), 2);
  } finally {
    await peer.close();
    await store.dispose();
  }
});

prometheus('two observers on one registry share the metrics; a custom prefix and buckets apply', async () => {
  const registry = new promClient.Registry();
  const first = prometheusObserver(promClient, { registry, prefix: 'app_rc_', buckets: [0.5, 1] });
  const second = prometheusObserver(promClient, { registry, prefix: 'app_rc_', buckets: [0.5, 1] });
  first.started?.('head');
  second.started?.('head');
  assert.is(await sample(registry, 'app_rc_operations_started_total', { operation: 'head' }), 2);
  second.finished?.({
    operation: 'head', outcome: 'ok', durationMs: 2, bytesWritten: 0, bytesRead: 0, count: 0, attempts: 0, mismatches: 0, waitedMs: 0,
  });
  assert.match(await registry.metrics(), 'app_rc_operation_duration_seconds_bucket{le="0.5",operation="head",outcome="ok"} 1');
  assert.throws(() => prometheusObserver(promClient, { registry, prefix: 'bad prefix' }), RangeError);
});

prometheus('uses the default registry when none is given', async () => {
  const observer = prometheusObserver(promClient, { prefix: 'rc_default_test_' });
  observer.started?.('scan');
  assert.is(await sample(promClient.register, 'rc_default_test_operations_started_total', { operation: 'scan' }), 1);
  promClient.register.clear();
});

prometheus.run();

const combined = suite('combineObservers');

combined('forwards to every observer, even when one throws', () => {
  const counting = countingObserver();
  const throwing: Observer = {
    started() { throw new Error('broken metrics'); },
    finished() { throw new Error('broken metrics'); },
  };
  const both = combineObservers(throwing, counting, {});
  both.started?.('head');
  const event: OperationEvent = {
    operation: 'head', outcome: 'ok', durationMs: 1, bytesWritten: 0, bytesRead: 4, count: 1, attempts: 0, mismatches: 0, waitedMs: 0,
  };
  both.finished?.(event);
  assert.is(counting.counts.head.started, 1);
  assert.is(counting.counts.head.bytesRead, 4);
});

combined('an observer that throws never changes an outcome nor reports one call twice', async () => {
  const events: OperationEvent[] = [];
  const throwing: Observer = {
    started() { throw new Error('broken metrics'); },
    finished(event) { events.push(event); throw new Error('broken metrics'); },
  };
  // Expected: the warning is the point of the test, so it is recorded rather than printed.
  const captured = captureWarnings(/an observer hook threw: broken metrics/);
  const consensus = new RedisConsensus(new RedisMock({ port: 39101 }), { observer: throwing });
  try {
    assert.is(await consensus.compareAndSet('k', null, { seqno: 1n, data: bytes('x') }), CaSResult.Committed);
    assert.is((await consensus.head('k'))?.seqno, 1n);
    for await (const key of consensus.listKeys()) assert.is(key, 'k');
    assert.equal(events.map((event) => [event.operation, event.outcome]),
      [['compareAndSet', 'ok'], ['head', 'ok'], ['listKeys', 'ok']]);
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(captured.warnings.some((warning) => warning.message.includes('an observer hook threw: broken metrics')));
  } finally {
    await captured.stop();
    await consensus.close();
  }
});

combined.run();

const ping = suite('ping');

ping('returns the round-trip time in milliseconds', async () => {
  const store = await mockBackend().store();
  try {
    const ms = await store.consensus.ping();
    assert.type(ms, 'number');
    assert.ok(ms >= 0 && Number.isFinite(ms));
    assert.ok((await store.consensus.ping({ timeoutMs: 1000 })) >= 0);
  } finally {
    await store.dispose();
  }
});

ping('fails as determinate when Redis cannot be reached', async () => {
  // Nothing listens on this port (in this helper's range): the connection is refused.
  const client = new Redis('redis://127.0.0.1:7499', {
    lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null,
  });
  client.on('error', () => {});
  const consensus = new RedisConsensus(client, { timeoutMs: 300, retry: { attempts: 2 } });
  try {
    const err = await consensus.ping().then(() => undefined, (e: unknown) => e);
    assert.instance(err, ExternalError);
    assert.is((err as ExternalError).determinate, true);
    assert.match((err as Error).message, /^determinate: /);
  } finally {
    await consensus.close();
    client.disconnect();
  }
});

ping('fails as determinate after close', async () => {
  const store = await mockBackend().store();
  await store.dispose();
  const err = await store.consensus.ping().then(() => undefined, (e: unknown) => e);
  assert.instance(err, ExternalError);
  assert.is((err as ExternalError).determinate, true);
});

ping('rejects an invalid timeout before sending anything', async () => {
  const store = await mockBackend().store();
  try {
    const err = await store.consensus.ping({ timeoutMs: -1 }).then(() => undefined, (e: unknown) => e);
    assert.instance(err, RangeError);
  } finally {
    await store.dispose();
  }
});

ping.run();
