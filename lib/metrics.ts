/**
 * Metrics: observers to pass as `RedisConsensusOptions.observer`.
 *
 * `prometheusObserver` takes the `prom-client` module as an argument, so this library never
 * imports it: `prom-client` is an optional peer dependency, needed only by those who use it.
 */
import { OPERATIONS } from './types.js';
import type { Observer, OperationEvent, OperationName } from './types.js';

/** The label values a metric is updated with. */
export type MetricLabels = Record<string, string>;

/** What `prometheusObserver` needs of a prom-client `Counter`. */
export interface PromCounter {
  /** Adds `value` (default 1) to the series of `labels`. */
  inc(labels: MetricLabels, value?: number): void;
}

/** What `prometheusObserver` needs of a prom-client `Histogram`. */
export interface PromHistogram {
  /** Records one observation in the series of `labels`. */
  observe(labels: MetricLabels, value: number): void;
}

/** The settings `prometheusObserver` passes to prom-client's metric constructors. */
export interface PromMetricConfiguration<Registry> {
  /** The metric's full name, prefix included. */
  name: string;
  /** What it counts, for `# HELP`. */
  help: string;
  /** Its labels: `operation`, and `outcome` where it applies. */
  labelNames: string[];
  /** The one registry to register it in. */
  registers: Registry[];
}

/** What `prometheusObserver` needs of a prom-client `Registry`. */
export interface PromRegistry {
  /** The metric registered under `name`, if any: lets two observers share one set of metrics. */
  getSingleMetric(name: string): unknown;
}

/**
 * The part of the `prom-client` module that `prometheusObserver` uses: pass the module itself
 * (`import * as promClient from 'prom-client'`). Typed structurally, so any prom-client from 14 on
 * fits and this library needs no types from it.
 */
export interface PromClient<Registry extends PromRegistry> {
  /** prom-client's `Counter` class. */
  Counter: {
    /** Creates a counter and registers it in `configuration.registers`. */
    new (configuration: PromMetricConfiguration<Registry>): PromCounter;
  };
  /** prom-client's `Histogram` class. */
  Histogram: {
    /** Creates a histogram with these bucket bounds and registers it. */
    new (configuration: PromMetricConfiguration<Registry> & { buckets: number[] }): PromHistogram;
  };
  /** prom-client's default registry, used when the options name none. */
  register: Registry;
}

/** Settings of `prometheusObserver`. */
export interface PrometheusObserverOptions<Registry> {
  /** Where to register the metrics. Default: prom-client's default registry (`register`). */
  registry?: Registry;
  /** Prefix of every metric name. Default `'redis_consensus_'`. */
  prefix?: string;
  /**
   * Upper bounds of the latency histogram's buckets, in seconds. The default spans 0.1 ms to 10 s:
   * one script call on a local Redis takes well under a millisecond.
   */
  buckets?: number[];
}

/** Buckets of the attempts-per-append histogram. */
const APPEND_ATTEMPT_BUCKETS = [1, 2, 3, 5, 10, 20, 50, 100];

/** The default latency buckets, in seconds. */
export const DEFAULT_LATENCY_BUCKETS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/**
 * An observer that feeds Prometheus metrics through `prom-client`: counters of operations started,
 * succeeded and failed (by `operation` and `outcome`), mismatches, bytes and versions truncated,
 * append attempts and waits, and a latency histogram. The list of metrics with their labels is in
 * docs/metrics.md (spec/docs.test.ts checks it against what this function registers).
 *
 * Calls rejected for invalid arguments never reach Redis and are not counted. Calling this twice
 * with the same registry and prefix (two stores in one process) shares the metrics instead of
 * failing on duplicate registration.
 *
 * @param promClient the `prom-client` module.
 * @example
 * ```ts
 * import * as promClient from 'prom-client';
 * const consensus = await RedisConsensus.connect(url, { observer: prometheusObserver(promClient) });
 * // serve: await promClient.register.metrics()
 * ```
 */
export function prometheusObserver<Registry extends PromRegistry>(
  promClient: PromClient<Registry>,
  options: PrometheusObserverOptions<Registry> = {},
): Observer {
  const registry = options.registry ?? promClient.register;
  const prefix = options.prefix ?? 'redis_consensus_';
  if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) {
    throw new RangeError(`prefix must be a valid Prometheus metric name prefix; got ${JSON.stringify(prefix)}`);
  }
  const reuse = <T>(name: string, make: (configuration: PromMetricConfiguration<Registry>) => T,
    help: string, labelNames: string[]): T =>
    (registry.getSingleMetric(prefix + name) as T | undefined) ??
      make({ name: prefix + name, help, labelNames, registers: [registry] });
  const counter = (name: string, help: string, labelNames = ['operation']): PromCounter =>
    reuse(name, (configuration) => new promClient.Counter(configuration), help, labelNames);

  const started = counter('operations_started_total', 'Operations that passed argument checks and started.');
  const succeeded = counter('operations_succeeded_total',
    'Operations that returned a result (a compare-and-set mismatch included).');
  const failed = counter('operations_failed_total',
    'Operations that failed with an ExternalError, by outcome: determinate (did not take effect) or ' +
    'indeterminate (a write that may have taken effect).', ['operation', 'outcome']);
  const mismatches = counter('mismatches_total',
    'ExpectationMismatch replies: compare-and-sets that returned one, races an append lost.');
  const waited = counter('wait_seconds_total',
    'Seconds appends spent waiting for their turn on a key and backing off after lost races.');
  const appendAttempts = reuse('append_attempts',
    (configuration) => new promClient.Histogram({ ...configuration, buckets: APPEND_ATTEMPT_BUCKETS }),
    'Compare-and-set attempts per append that ended.', []);
  const bytesWritten = counter('bytes_written_total', 'Payload bytes committed.');
  const bytesRead = counter('bytes_read_total', 'Payload bytes returned by reads.');
  const truncated = counter('versions_truncated_total', 'Versions deleted by truncate.');
  const buckets = [...(options.buckets ?? DEFAULT_LATENCY_BUCKETS)];
  const duration = reuse('operation_duration_seconds',
    (configuration) => new promClient.Histogram({ ...configuration, buckets }),
    'Operation latency in seconds, retries included, by outcome: ok, mismatch, determinate, indeterminate.',
    ['operation', 'outcome']);

  return {
    started(operation) {
      started.inc({ operation });
    },
    finished(event) {
      const { operation, outcome } = event;
      if (outcome === 'ok' || outcome === 'mismatch') {
        succeeded.inc({ operation });
      } else {
        failed.inc({ operation, outcome });
      }
      if (event.mismatches > 0) mismatches.inc({ operation }, event.mismatches);
      if (event.waitedMs > 0) waited.inc({ operation }, event.waitedMs / 1000);
      if (operation === 'append') appendAttempts.observe({}, event.attempts);
      // Zero increments are skipped so that series appear only for operations that move bytes.
      if (event.bytesWritten > 0) bytesWritten.inc({ operation }, event.bytesWritten);
      if (event.bytesRead > 0) bytesRead.inc({ operation }, event.bytesRead);
      if (operation === 'truncate' && event.count > 0) truncated.inc({ operation }, event.count);
      duration.observe({ operation, outcome }, event.durationMs / 1000);
    },
  };
}

/** What a `countingObserver` has seen of one operation. */
export interface OperationCounts {
  /** Calls that passed argument checks and started. */
  started: number;
  /** Calls that returned a result other than a mismatch. */
  ok: number;
  /** Calls that returned ExpectationMismatch (compareAndSet). */
  mismatch: number;
  /** Calls that failed with a determinate ExternalError: they did not take effect. */
  determinate: number;
  /** Calls that failed with an indeterminate ExternalError: writes that may have taken effect. */
  indeterminate: number;
  /** Payload bytes committed. */
  bytesWritten: number;
  /** Payload bytes returned. */
  bytesRead: number;
  /** Versions returned (head, scan), deleted (truncate) or committed (compareAndSet, append); keys listed. */
  count: number;
  /** Sum of durations, in milliseconds. */
  totalMs: number;
  /** Compare-and-set attempts made (compareAndSet: one per call; append: one or more per call). */
  attempts: number;
  /** ExpectationMismatch replies among those attempts (append: the races it lost). */
  mismatches: number;
  /** Time spent waiting for a turn on a key or backing off (append), in milliseconds. */
  waitedMs: number;
}

/** An observer that keeps counts in memory; see `countingObserver`. */
export interface CountingObserver extends Required<Pick<Observer, 'started' | 'finished'>>, Pick<Observer, 'warning'> {
  /** Counts per operation; every operation is present, zeroed until it runs. */
  readonly counts: Readonly<Record<OperationName, Readonly<OperationCounts>>>;
  /** Sets every count back to zero. */
  reset(): void;
}

/**
 * An observer that counts in memory: for tests, logs, or a health endpoint without Prometheus.
 *
 * @example
 * ```ts
 * const observer = countingObserver();
 * const consensus = await RedisConsensus.connect(url, { observer });
 * // ...
 * console.log(observer.counts.compareAndSet.mismatch);
 * // contention: lost races per append, time spent waiting
 * const { append } = observer.counts;
 * console.log(append.mismatches / append.started, append.waitedMs);
 * ```
 */
export function countingObserver(): CountingObserver {
  const counts = {} as Record<OperationName, OperationCounts>;
  const reset = (): void => {
    for (const operation of OPERATIONS) {
      counts[operation] = {
        started: 0, ok: 0, mismatch: 0, determinate: 0, indeterminate: 0,
        bytesWritten: 0, bytesRead: 0, count: 0, totalMs: 0, attempts: 0, mismatches: 0, waitedMs: 0,
      };
    }
  };
  reset();
  return {
    counts,
    reset,
    started(operation) {
      counts[operation].started++;
    },
    finished(event: OperationEvent) {
      const entry = counts[event.operation];
      entry[event.outcome]++;
      entry.bytesWritten += event.bytesWritten;
      entry.bytesRead += event.bytesRead;
      entry.count += event.count;
      entry.totalMs += event.durationMs;
      entry.attempts += event.attempts;
      entry.mismatches += event.mismatches;
      entry.waitedMs += event.waitedMs;
    },
  };
}

/**
 * One observer that forwards to several (the options take one). An observer that throws does not
 * stop the others, and its error is not thrown into the operation that reported.
 */
export function combineObservers(...observers: Observer[]): Observer {
  const each = (call: (observer: Observer) => void): void => {
    for (const observer of observers) {
      try {
        call(observer);
      } catch {
        // Metrics must never change the outcome of a store operation.
      }
    }
  };
  return {
    started(operation) {
      each((observer) => observer.started?.(operation));
    },
    finished(event) {
      each((observer) => observer.finished?.(event));
    },
    warning(warning) {
      each((observer) => observer.warning?.(warning));
    },
  };
}
