/**
 * redis-consensus: the `Consensus` abstraction of Materialize's persist layer on Redis.
 *
 * @packageDocumentation
 */
export { RedisConsensus } from './consensus.js';
export { CaSResult, OPERATIONS } from './types.js';
export type {
  AppendBackoff, AppendOptions, AppendResult, AppendUpdate, CallOptions, CompareAndSetOutcome, ConnectOptions,
  DurabilityOptions, FollowOptions, Observer, OperationEvent, OperationName, Outcome, RedisConsensusOptions,
  RetryOptions, SeqNoInput, StoreResetAcknowledgement, StoreWarning, VersionedData, VersionedDataInput, WatchCallOptions, WatchOptions,
} from './types.js';
export { ExternalError } from './errors.js';
export { Lease } from './lease-holder.js';
export { LeaseLostError } from './lease-record.js';
export type { LeaseLossReason, LeaseOptions, LeaseRecord, LeaseState } from './lease-record.js';
export { TruncatedError } from './follow.js';
export type { ExternalErrorCode } from './errors.js';
export type { RedisClient } from './client.js';
export { SCAN_ALL, SEQNO_MAX } from './seqno.js';
export type { SeqNo } from './seqno.js';
export {
  combineObservers, countingObserver, DEFAULT_LATENCY_BUCKETS, prometheusObserver,
} from './metrics.js';
export type {
  CountingObserver, MetricLabels, OperationCounts, PromClient, PromCounter, PromHistogram,
  PromMetricConfiguration, PrometheusObserverOptions, PromRegistry,
} from './metrics.js';
