/**
 * The store's operations against Redis, behind `RedisConsensus` (which documents them): for each,
 * the argument checks, one script call through the Link with the bucket's epoch marker, the reply
 * decoded (`scripts.ts`) and the epoch envelope opened (`epoch.ts`), durability, and the report to
 * the observer. The public class keeps the API and its documentation; this keeps the mechanics.
 */
import { checkCallOptions, checkKey, checkTimeout, toExpected, toLimit, toNext, toSeqNo } from './arguments.js';
import type { NextVersion } from './arguments.js';
import { checkEvictionPolicy, checkMinReplicas } from './checks.js';
import type { EvictionPolicyAction } from './checks.js';
import { isConnection } from './client.js';
import type { Durability } from './durability.js';
import { epochIdOf, Epochs, freshEpochId, freshTag } from './epoch.js';
import { BUCKETS, epochOf, keyOfMember } from './layout.js';
import type { KeyNames, KeyNamesCache } from './layout.js';
import type { Link } from './link.js';
import { carriedHeader, carriedNotice } from './notice.js';
import { begin, observe } from './observer.js';
import type { Observation, Reported } from './observer.js';
import { callReadScript, isReadScript } from './read-only.js';
import { scanAll, scanPages, STEP_LIMITS, truncateInSteps } from './history.js';
import type { ScanStep } from './history.js';
import { registryMembers } from './registry.js';
import {
  ACK_NO_MARKER, ACK_WAS_RESET, ACK_WAS_ROLLED_BACK, callScript, CAS_COMMITTED, CONFIRM_STORED, decodeHead,
  decodeScan, decodeTruncate, isCasCommit, isLeaseCommit, isPlainCommit, openEpoch,
} from './scripts.js';
import type {
  AcknowledgeResetReply, CompareAndSetWithHeadReply, ConfirmReply, EpochReply, HeadReply, LeaseReadReply, LeaseReply,
  ScanReply, ScriptArgs, ScriptName,
} from './scripts.js';
import { encodeSeqNo, SCAN_ALL, SEQNO_WIDTH } from './seqno.js';
import type { SeqNo } from './seqno.js';
import { CaSResult } from './types.js';
import type {
  CallOptions, CompareAndSetOutcome, Observer, OperationName, SeqNoInput, StoreResetAcknowledgement, VersionedData,
  VersionedDataInput,
} from './types.js';

/** What the operations of one store work with, made once by its constructor. */
export interface OperationsContext {
  readonly prefix: string;
  readonly link: Link;
  readonly names: KeyNamesCache;
  readonly timeoutMs: number;
  readonly durability: Durability | undefined;
  readonly observer: Observer | undefined;
  readonly maxPayloadBytes: number;
  readonly maxKeyBytes: number;
  readonly evictionPolicy: EvictionPolicyAction;
  /** The command compareAndSet announces commits with: PUBLISH, SPUBLISH (Cluster), or none. */
  readonly announce: '' | 'PUBLISH' | 'SPUBLISH';
  /** Payloads up to this many bytes ride in the announcement (0: never); see notice.ts. */
  readonly carryMaxBytes: number;
  /** Whether a carried announcement is followed by the plain one, for older watchers. */
  readonly legacyAnnouncements: boolean;
}

export class Operations {
  private readonly prefix: string;
  private readonly link: Link;
  private readonly names: KeyNamesCache;
  private readonly timeoutMs: number;
  private readonly durability: Durability | undefined;
  private readonly observer: Observer | undefined;
  private readonly maxPayloadBytes: number;
  private readonly maxKeyBytes: number;
  private readonly evictionPolicy: EvictionPolicyAction;
  private readonly announce: '' | 'PUBLISH' | 'SPUBLISH';
  private readonly carryMaxBytes: number;
  private readonly legacyAnnouncements: boolean;
  /** ioredis-mock: its Lua cannot append a binary payload to the notice, so the client sends it whole. */
  private readonly wholeNotices: boolean;
  /** The epoch marker learned for each bucket, which every script call passes for its check. */
  private readonly epochs = new Epochs();
  /** The flags of `compareAndSet-4.lua`'s first argument, by withHead (1) + carry (2). */
  private readonly flags: readonly string[];

  constructor(context: OperationsContext) {
    ({
      prefix: this.prefix, link: this.link, names: this.names, timeoutMs: this.timeoutMs,
      durability: this.durability, observer: this.observer, maxPayloadBytes: this.maxPayloadBytes,
      maxKeyBytes: this.maxKeyBytes, evictionPolicy: this.evictionPolicy, announce: this.announce,
      carryMaxBytes: this.carryMaxBytes, legacyAnnouncements: this.legacyAnnouncements,
    } = context);
    this.wholeNotices = !isConnection(context.link.writer);
    this.flags = casFlags(this.announce, this.legacyAnnouncements);
  }

  async head(key: string, options?: CallOptions): Promise<VersionedData | null> {
    const names = this.names.get(checkKey(key, this.maxKeyBytes));
    const timeoutMs = this.callTimeout(options);
    return observe(this.observer, 'head', async (): Promise<Reported<VersionedData | null>> => {
      const sent = this.epochs.known(names.bucket);
      const reply = await this.script<EpochReply<HeadReply>>('head', false, timeoutMs,
        [names.versions, names.data, names.epoch, sent], options?.signal);
      const head = decodeHead(openEpoch(reply, this.epochs, names, sent, 'head'), key);
      return head === null ? { result: null } : { result: head, bytesRead: head.data.length, count: 1 };
    });
  }

  /**
   * Both compare-and-sets: one script. The plain one (`withHead` false) resolves to a CaSResult and
   * its mismatch carries no payload; `withHead` asks the script for the head with a mismatch.
   */
  compareAndSet(
    key: string, expected: SeqNoInput | null, next: VersionedDataInput, options: CallOptions | undefined, withHead: false,
  ): Promise<CaSResult>;
  compareAndSet(
    key: string, expected: SeqNoInput | null, next: VersionedDataInput, options: CallOptions | undefined, withHead: true,
  ): Promise<CompareAndSetOutcome>;
  compareAndSet(
    key: string, expected: SeqNoInput | null, next: VersionedDataInput, options: CallOptions | undefined, withHead: boolean,
  ): Promise<CaSResult | CompareAndSetOutcome> {
    // Not async, and no async closure: this is the hot path, and each async frame costs
    // promises and turns per call. Invalid arguments still reject, as from an async method.
    let names: KeyNames;
    let version: NextVersion;
    let timeoutMs: number;
    let args: ScriptArgs;
    let sent: string;
    let head: string;
    try {
      names = this.names.get(checkKey(key, this.maxKeyBytes));
      const expectedSeqNo = toExpected(expected);
      version = toNext(next, expectedSeqNo, this.maxPayloadBytes);
      timeoutMs = this.callTimeout(options);
      sent = this.epochs.known(names.bucket);
      head = this.epochs.nextHead(names.bucket, sent, freshTag());
      // Issue 21: the announcement carries the version (notice.ts), so that watchers need no read.
      const carry = this.announce !== '' && version.payload.length <= this.carryMaxBytes;
      const seqnos = encodeSeqNo(version.seqno) + (expectedSeqNo === null ? '' : encodeSeqNo(expectedSeqNo));
      args = [
        names.versions, names.data, names.registry, names.epoch,
        this.flags[(withHead ? 1 : 0) + (carry ? 2 : 0)]! + seqnos, version.payload, sent, head,
      ];
      // The script derives the channel from the registry's name and builds the carried notice.
      // ioredis-mock's Lua sees the KEYS without the client's keyPrefix, and cannot append a
      // binary payload: it is told the channel, and gets the notice whole.
      if (this.wholeNotices) {
        const header = carry
          ? carriedHeader(seqnos.slice(0, SEQNO_WIDTH), seqnos.slice(SEQNO_WIDTH), epochIdOf(sent), names.member)
          : undefined;
        args.push(names.heads, header === undefined ? '' : carriedNotice(header, version.payload));
      }
    } catch (err) {
      return Promise.reject(err);
    }
    const { seqno, payload } = version;
    return observe(this.observer, 'compareAndSet', (): Promise<Reported<CaSResult | CompareAndSetOutcome>> => {
      const mark = this.durability?.mark(names.versions);
      const settle = (wire: EpochReply<CompareAndSetWithHeadReply>): Reported<CaSResult | CompareAndSetOutcome> => {
        const reply = openEpoch(wire, this.epochs, names, sent, 'compareAndSet');
        if (isPlainCommit(wire)) this.epochs.committed(names.bucket, sent, head);
        else if (reply !== CAS_COMMITTED) {
          if (!withHead) return MISMATCH;
          const found = decodeHead(reply as HeadReply, key);
          return {
            result: { result: CaSResult.ExpectationMismatch, head: found }, outcome: 'mismatch',
            bytesRead: found?.data.length ?? 0, count: found === null ? 0 : 1,
          };
        }
        return {
          result: withHead ? { result: CaSResult.Committed, head: { seqno, data: payload } } : CaSResult.Committed,
          bytesWritten: payload.length, count: 1,
        };
      };
      // With durability, a commit counts in what this store knows of the bucket (its own count, or
      // an envelope's marker, which includes it) only once the replicas have it: one that falls
      // short may be lost by a failover, which must not then be taken for a rollback (as leases).
      return this.script<EpochReply<CompareAndSetWithHeadReply>>('compareAndSet', true, timeoutMs, args, options?.signal)
        .then((wire) => (mark !== undefined && isCasCommit(wire)
          ? this.durability!.acknowledged('compareAndSet', names.versions, mark).then(() => settle(wire))
          : settle(wire)));
    });
  }

  async scan(key: string, from: SeqNoInput, limit: number | bigint, options?: CallOptions): Promise<VersionedData[]> {
    const names = this.names.get(checkKey(key, this.maxKeyBytes));
    const fromSeqNo = toSeqNo(from, 'from');
    const count = toLimit(limit);
    const timeoutMs = this.callTimeout(options);
    return observe(this.observer, 'scan', async (): Promise<Reported<VersionedData[]>> => {
      if (count === 0n) return { result: [] };
      const versions = await scanAll(this.scanStep(key, names, timeoutMs, options?.signal), fromSeqNo, count);
      let bytesRead = 0;
      for (const version of versions) bytesRead += version.data.length;
      return { result: versions, bytesRead, count: versions.length };
    });
  }

  /** `scan`, streamed: the pages of one snapshot as they are read, reported to the observer as a scan. */
  async *scanStream(key: string, from: SeqNoInput, options?: CallOptions): AsyncGenerator<VersionedData, void, undefined> {
    const names = this.names.get(checkKey(key));
    const fromSeqNo = toSeqNo(from, 'from');
    const timeoutMs = this.callTimeout(options);
    const observation = begin(this.observer, 'scan');
    let count = 0;
    let bytesRead = 0;
    let failed = false;
    try {
      for await (const page of scanPages(this.scanStep(key, names, timeoutMs, options?.signal), fromSeqNo, SCAN_ALL)) {
        for (const version of page) {
          count++;
          bytesRead += version.data.length;
          yield version;
        }
      }
    } catch (err) {
      failed = true;
      observation.fail(err);
      throw err;
    } finally {
      // Also when the caller stops early (`break`): what it took is reported.
      if (!failed) observation.finish({ count, bytesRead });
    }
  }

  /** One bounded `scan-3.lua` call per request (history.ts loops), each with its own deadline. */
  private scanStep(key: string, names: KeyNames, timeoutMs: number, signal: AbortSignal | undefined): ScanStep {
    return async ({ from, to, after, limit }) => {
      const sent = this.epochs.known(names.bucket);
      const reply = await this.script<EpochReply<ScanReply>>('scan', false, timeoutMs, [
        names.versions, names.data, names.epoch, encodeSeqNo(from), to === undefined ? '' : encodeSeqNo(to),
        after === undefined ? '' : encodeSeqNo(after), String(limit), String(STEP_LIMITS.scanBytes), sent,
      ], signal);
      return decodeScan(openEpoch(reply, this.epochs, names, sent, 'scan'), key);
    };
  }

  async truncate(key: string, seqno: SeqNoInput, options?: CallOptions): Promise<number> {
    const names = this.names.get(checkKey(key, this.maxKeyBytes));
    const upper = toSeqNo(seqno, 'seqno');
    const timeoutMs = this.callTimeout(options);
    return observe(this.observer, 'truncate', async (): Promise<Reported<number>> => {
      const mark = this.durability?.mark(names.versions);
      const deleted = await truncateInSteps(async (maxDeletions) => {
        const sent = this.epochs.known(names.bucket);
        const reply = await this.script<EpochReply<number>>('truncate', true, timeoutMs, [
          names.versions, names.data, names.epoch, encodeSeqNo(upper), sent, sent === '' ? freshEpochId() : '',
          String(maxDeletions),
        ], options?.signal);
        return decodeTruncate(openEpoch(reply, this.epochs, names, sent, 'truncate'), upper);
      });
      if (deleted > 0 && mark !== undefined) await this.durability!.acknowledged('truncate', names.versions, mark);
      return { result: deleted, count: deleted };
    });
  }

  async *listKeys(options?: CallOptions): AsyncGenerator<string, void, undefined> {
    const timeoutMs = this.callTimeout(options);
    const observation = begin(this.observer, 'listKeys');
    let yielded = 0;
    let failed = false;
    try {
      for await (const member of registryMembers(this.link, this.prefix, timeoutMs, options?.signal)) {
        yielded++;
        yield keyOfMember(member);
      }
    } catch (err) {
      failed = true;
      observation.fail(err);
      throw err;
    } finally {
      // Also when the caller stops early (`break`): what it took is reported.
      if (!failed) observation.finish({ count: yielded });
    }
  }

  /**
   * For `append`, with durability on: whether the version at `seqno` of `key`, which a resend found
   * committed with its bytes, is still stored; if it is, waits until the configured replicas have it
   * (a write is made after it on the write connection, then `WAIT` on that connection: see
   * `lua/confirm-2.lua`). True at once without durability.
   * @throws ExternalError: indeterminate (`replicas-short`) when replicas fall short; determinate
   *   when the call did not run or was refused (`store-reset`, `store-rollback`).
   */
  async confirm(key: string, seqno: SeqNo, options?: CallOptions): Promise<boolean> {
    if (this.durability === undefined) return true;
    const names = this.names.get(key);
    const timeoutMs = this.callTimeout(options);
    const mark = this.durability.mark(names.versions);
    const sent = this.epochs.known(names.bucket);
    const reply = await this.script<EpochReply<ConfirmReply>>('confirm', true, timeoutMs,
      [names.versions, names.epoch, encodeSeqNo(seqno), sent, freshTag()], options?.signal);
    if (openEpoch(reply, this.epochs, names, sent, 'append') !== CONFIRM_STORED) return false;
    await this.durability.acknowledged('append', names.versions, mark);
    return true;
  }

  /**
   * One call of `lease-5.lua` for `lease.ts`, which builds the lease's own arguments (`args`: op,
   * expected, next, owner, ttlMs, name) and reads the reply; the epoch marker, the announcement and
   * durability are handled here as for compareAndSet. On ioredis-mock, whose TIME is unusable
   * (seconds rounded, microseconds from another clock), the script is given `Date.now()`: the mock
   * server runs in this process, so that is its clock (as for its own key expiry).
   */
  async lease(names: KeyNames, args: readonly string[], timeoutMs: number, signal?: AbortSignal): Promise<LeaseReply> {
    const mark = args[0] === 'leave' ? undefined : this.durability?.mark(names.versions);
    const sent = this.epochs.known(names.bucket);
    const tag = freshTag();
    const wire = await this.script<EpochReply<LeaseReply>>('lease', true, timeoutMs, [
      names.versions, names.data, names.registry, names.epoch, names.waiters, ...args,
      names.member, names.heads, this.announce, sent, tag, this.scriptNow(),
    ], signal);
    // A commit counts in what this store knows of the bucket only once the replicas have it: one
    // that falls short may be lost by a failover, which must not then be taken for a rollback.
    const commit = isLeaseCommit(wire);
    if (commit && mark !== undefined) await this.durability!.acknowledged('lease', names.versions, mark);
    const reply = openEpoch(wire, this.epochs, names, sent, 'lease');
    if (commit && reply === wire) this.epochs.committed(names.bucket, sent, this.epochs.nextHead(names.bucket, sent, tag));
    return reply;
  }

  /** One call of `leaseRead-4.lua` (read-only, so EVALSHA_RO where the server has it) for `readLease`. */
  async leaseRead(names: KeyNames, timeoutMs: number): Promise<LeaseReadReply> {
    const sent = this.epochs.known(names.bucket);
    const wire = await this.script<EpochReply<LeaseReadReply>>('leaseRead', false, timeoutMs,
      [names.versions, names.data, names.epoch, names.waiters, sent, this.scriptNow()], undefined);
    return openEpoch(wire, this.epochs, names, sent, 'readLease');
  }

  /** Starts reporting one operation made of several calls (a lease's) to the observer. */
  observation(operation: OperationName): Observation {
    return begin(this.observer, operation);
  }

  /** The epoch id this store knows for a key's bucket ('' when none): for carried notices. */
  knownEpoch(names: KeyNames): string {
    return epochIdOf(this.epochs.known(names.bucket));
  }

  /** The Redis names of a key (checked): for watches. */
  namesOf(key: string): KeyNames {
    return this.names.get(checkKey(key, this.maxKeyBytes));
  }

  async ping(options?: CallOptions): Promise<number> {
    const timeoutMs = this.callTimeout(options);
    const started = performance.now();
    await this.link.run(false, 'ping', timeoutMs, (client) => client.ping(), options?.signal);
    return performance.now() - started;
  }

  async check(options?: CallOptions): Promise<void> {
    const timeoutMs = this.callTimeout(options);
    await this.link.run(false, 'check', timeoutMs, async (client) => {
      const primaries = client.isCluster === true ? client.nodes?.('master') ?? [] : [client];
      await checkEvictionPolicy(primaries, this.evictionPolicy, 'the Redis server');
      if (this.durability !== undefined) await checkMinReplicas(primaries, 'the Redis server', this.observer);
    }, options?.signal);
  }

  async acknowledgeStoreReset(options?: CallOptions): Promise<StoreResetAcknowledgement> {
    const timeoutMs = this.callTimeout(options);
    const id = freshEpochId();
    const acknowledgement = { buckets: BUCKETS, reset: 0, rolledBack: 0, unmarked: 0 };
    // Several buckets at once: 1,024 round trips in turn take long on a remote Redis.
    for (let first = 0; first < BUCKETS; first += ACKNOWLEDGE_IN_FLIGHT) {
      const buckets = Array.from({ length: Math.min(ACKNOWLEDGE_IN_FLIGHT, BUCKETS - first) }, (_, i) => first + i);
      const replies = await Promise.all(buckets.map((bucket) => this.script<AcknowledgeResetReply>(
        'acknowledgeReset', true, timeoutMs, [epochOf(this.prefix, bucket), id], options?.signal)));
      for (const reply of replies) {
        if (reply === ACK_WAS_RESET) acknowledgement.reset++;
        else if (reply === ACK_WAS_ROLLED_BACK) acknowledgement.rolledBack++;
        else if (reply === ACK_NO_MARKER) acknowledgement.unmarked++;
      }
    }
    return acknowledgement;
  }

  /**
   * The time the lease scripts take: '' (they read TIME), or on ioredis-mock `Date.now()` as
   * '<seconds> <microseconds>' (see `lease`).
   */
  private scriptNow(): string {
    if (isConnection(this.link.writer)) return '';
    const ms = Date.now();
    return `${Math.floor(ms / 1000)} ${(ms % 1000) * 1000}`;
  }

  /**
   * The call's deadline; also checks its options (an object, a real AbortSignal) before anything
   * is armed, as every operation calls this before sending.
   */
  private callTimeout(options: CallOptions | undefined): number {
    const checked = checkCallOptions(options);
    if (checked === undefined || checked.timeoutMs === undefined) return this.timeoutMs;
    return checkTimeout(checked.timeoutMs, 'options.timeoutMs');
  }

  private script<T>(
    script: ScriptName, isWrite: boolean, timeoutMs: number, args: ScriptArgs, signal: AbortSignal | undefined,
  ): Promise<T> {
    return this.link.run(isWrite, script, timeoutMs, isReadScript(script)
      ? (client) => callReadScript<T>(client, script, args)
      : (client) => callScript<T>(client, script, args), signal);
  }
}

/** How many buckets `acknowledgeStoreReset` writes at once. */
const ACKNOWLEDGE_IN_FLIGHT = 64;

/**
 * The four flag bytes that start `compareAndSet-4.lua`'s first argument (its header has them), for
 * each combination of withHead (1) and carry (2): made once per store, not per call.
 */
function casFlags(announce: '' | 'PUBLISH' | 'SPUBLISH', legacy: boolean): string[] {
  const announced = announce === 'PUBLISH' ? 'P' : announce === 'SPUBLISH' ? 'S' : '-';
  return [0, 1, 2, 3].map((i) => `${announced}${i & 1 ? 'h' : '-'}${i & 2 ? 'c' : '-'}${legacy ? 'l' : '-'}`);
}

/** A plain compareAndSet's mismatch, as reported: the same object every time. */
const MISMATCH: Reported<CaSResult> = { result: CaSResult.ExpectationMismatch, outcome: 'mismatch' };
