/**
 * redis-consensus: the `Consensus` abstraction of Materialize's persist layer on Redis.
 *
 * @packageDocumentation
 */
export { RedisConsensus, CaSResult } from './consensus.js';
export type {
  CallOptions, DurabilityOptions, Observer, OperationEvent, OperationName, RedisConsensusOptions,
  SeqNoInput, VersionedData, VersionedDataInput,
} from './consensus.js';
export { ExternalError } from './errors.js';
export type { RedisClient, RetryOptions } from './link.js';
export { SCAN_ALL, SEQNO_MAX } from './seqno.js';
export type { SeqNo } from './seqno.js';
export {
  combineObservers, countingObserver, DEFAULT_LATENCY_BUCKETS, prometheusObserver,
} from './metrics.js';
export type {
  CountingObserver, MetricLabels, OperationCounts, PromClient, PromCounter, PromHistogram,
  PromMetricConfiguration, PrometheusObserverOptions, PromRegistry,
} from './metrics.js';
