/**
 * Long histories in bounded steps: a scan or a truncate of any size is a loop of script calls,
 * each bounded in versions (and, for a scan, in payload bytes), so that no call holds Redis's
 * single thread, and every other client, for long, nor builds a reply of unbounded size.
 *
 * - scan (`scan-3.lua`): the first step reports the key's head; later steps read up to it, and
 *   name the last seqno already read, which must still be stored. A scan is therefore one snapshot
 *   (the versions in `[from, head]` when it started) unless a truncate removed versions not read
 *   yet, which the step reports: an array scan then starts over (the result is then the snapshot
 *   after that truncate), a streamed scan fails with `scan-truncated` (what it yielded cannot be
 *   taken back).
 * - truncate (`truncate-3.lua`): deletes the oldest `truncateVersions` below the bound per step,
 *   until a step deletes fewer. What remains to do is always "every version below the bound", so
 *   an interrupted truncate is finished by calling it again.
 */
import { determinate, ExternalError, indeterminate } from './errors.js';
import type { SeqNo } from './seqno.js';
import { formatSeqNo } from './seqno.js';
import type { VersionedData } from './types.js';

/** The bounds of each step (not options: tests and the bench change them to exercise the loop). */
export const STEP_LIMITS = {
  /**
   * Versions one scan step returns at most. Measured on Redis 7.0 (32 B payloads): a step of 1,000
   * took ~1.5 ms inside Redis, 2,000 ~4.5 ms, 5,000 ~15 ms (the cost per version grows with the
   * step), so smaller steps also cost less in all.
   */
  scanVersions: 1000,
  /** Payload bytes one scan step returns at most (one version always comes, whatever its size). */
  scanBytes: 1024 * 1024,
  /**
   * Versions one truncate step deletes at most. Measured on Redis 7.0, deleting from 1M versions
   * of 32 B: steps of 5,000 took 8.1 ms inside Redis at the median, steps of 2,000 2.3 ms, and the
   * whole truncate 18% longer.
   */
  truncateVersions: 2000,
};

/** How many times an array scan starts over after truncates removed versions it had not read. */
const SCAN_RESTARTS = 3;

/** One scan step's result: the versions read, and the key's head when they were. */
export interface ScanPage {
  readonly versions: VersionedData[];
  readonly head: SeqNo;
}

/** A scan step reported that a truncate removed the last version read (and maybe later ones). */
export const TRUNCATED = 'truncated';

/** What a scan step is asked: the range, the last seqno read, how many versions at most. */
export interface ScanStepRequest {
  readonly from: SeqNo;
  /** The highest seqno wanted (the head the first step saw), or undefined on a first step. */
  readonly to: SeqNo | undefined;
  /** The last seqno read, which must still be stored; undefined on a first step. */
  readonly after: SeqNo | undefined;
  readonly limit: number;
}

/** One `scan-3.lua` call: a page (empty: nothing left in range), or TRUNCATED. */
export type ScanStep = (request: ScanStepRequest) => Promise<ScanPage | null | typeof TRUNCATED>;

/**
 * The pages of one scan snapshot: up to `limit` versions with seqno >= `from`.
 * @throws ExternalError (determinate, `scan-truncated`) when a truncate removed versions not read yet.
 */
export async function* scanPages(step: ScanStep, from: SeqNo, limit: bigint): AsyncGenerator<VersionedData[], void, undefined> {
  let next = from;
  let remaining = limit;
  let to: SeqNo | undefined;
  let after: SeqNo | undefined;
  while (remaining > 0n) {
    const request = { from: next, to, after, limit: Number(remaining < STEP_LIMITS.scanVersions ? remaining : STEP_LIMITS.scanVersions) };
    const page = await step(request);
    if (page === TRUNCATED) {
      throw determinate('scan-truncated', `versions from ${formatSeqNo(next)} were truncated during the scan, ` +
        `after ${formatSeqNo(after!)} was read; scan again from the truncation`);
    }
    if (page === null || page.versions.length === 0) return;
    to ??= page.head;
    after = page.versions[page.versions.length - 1]!.seqno;
    remaining -= BigInt(page.versions.length);
    yield page.versions;
    if (after >= to) return;
    next = after + 1n;
  }
}

/** Every version of one scan snapshot in one array, starting over after an interleaved truncate. */
export async function scanAll(step: ScanStep, from: SeqNo, limit: bigint): Promise<VersionedData[]> {
  for (let restarts = 0; ; restarts++) {
    const versions: VersionedData[] = [];
    try {
      for await (const page of scanPages(step, from, limit)) {
        for (const version of page) versions.push(version);
      }
      return versions;
    } catch (err) {
      if (!isScanTruncated(err) || restarts >= SCAN_RESTARTS) throw err;
    }
  }
}

function isScanTruncated(err: unknown): boolean {
  return err instanceof Error && (err as { code?: unknown }).code === 'scan-truncated';
}

/**
 * Truncates in steps of at most `STEP_LIMITS.truncateVersions` deletions until a step deletes
 * fewer; the total deleted. `step(max)` is one `truncate-3.lua` call (it throws as the script's
 * refusals decode).
 * @throws what the first step throws; a failure after a step deleted versions is indeterminate
 *   (the truncate took effect in part: calling it again finishes it).
 */
export async function truncateInSteps(step: (maxDeletions: number) => Promise<number>): Promise<number> {
  let total = 0;
  for (;;) {
    const max = STEP_LIMITS.truncateVersions;
    let deleted: number;
    try {
      deleted = await step(max);
    } catch (err) {
      if (total === 0 || !(err instanceof ExternalError)) throw err;
      throw indeterminate(err.code, `${err.message.replace(/^(in)?determinate: /, '')} (after earlier steps of this ` +
        `truncate deleted ${total} versions; truncate again to finish)`, err, err.attempts);
    }
    total += deleted;
    if (deleted < max) return total;
  }
}
