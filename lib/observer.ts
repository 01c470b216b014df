/**
 * Observation: how every operation reports to the `Observer` hooks. One begin/finish path, used by
 * the single-reply operations (`observe`) and by the streaming `listKeys` (`begin`).
 */
import type { Observer, OperationName, Outcome } from './types.js';

/** What an operation's body reports besides its result. */
export interface Report {
  /** `mismatch` for compareAndSet's ExpectationMismatch; `ok` when absent. */
  readonly outcome?: 'ok' | 'mismatch';
  readonly bytesWritten?: number;
  readonly bytesRead?: number;
  readonly count?: number;
  /** Compare-and-set attempts; when absent, 1 for compareAndSet and 0 for the others. */
  readonly attempts?: number;
  /** Mismatch replies; when absent, 1 for a `mismatch` outcome and 0 otherwise. */
  readonly mismatches?: number;
  /** Time spent queued or backing off, in ms; 0 when absent. */
  readonly waitedMs?: number;
}

/** An operation's result with its report. */
export type Reported<T> = Report & { readonly result: T };

/** One operation under observation: `finish` or `fail` it exactly once. */
export interface Observation {
  finish(report: Report): void;
  /** `report` carries what a failed operation did before it failed (append's attempts). */
  fail(err: unknown, report?: Report): void;
}

const UNOBSERVED: Observation = { finish() {}, fail() {} };

/** Starts observing one operation (after its arguments were checked). */
export function begin(observer: Observer | undefined, operation: OperationName): Observation {
  if (observer === undefined) return UNOBSERVED;
  const started = performance.now();
  safely(() => observer.started?.(operation));
  const finished = (outcome: Outcome, report: Report): void => safely(() => observer.finished?.({
    operation, outcome, durationMs: performance.now() - started,
    bytesWritten: report.bytesWritten ?? 0, bytesRead: report.bytesRead ?? 0, count: report.count ?? 0,
    attempts: report.attempts ?? (operation === 'compareAndSet' ? 1 : 0),
    mismatches: report.mismatches ?? (outcome === 'mismatch' ? 1 : 0),
    waitedMs: report.waitedMs ?? 0,
  }));
  return {
    finish: (report) => finished(report.outcome ?? 'ok', report),
    fail: (err, report = {}) => finished(
      (err as { determinate?: boolean } | null)?.determinate === false ? 'indeterminate' : 'determinate', report),
  };
}

/** Runs an operation's body, reporting it to `observer`, and returns its result. */
export function observe<T>(
  observer: Observer | undefined, operation: OperationName, body: () => Promise<Reported<T>>,
): Promise<T> {
  // Without an observer, no async frame of its own: this is every call's path.
  if (observer === undefined) return body().then(resultOf);
  const observation = begin(observer, operation);
  return body().then((done) => {
    observation.finish(done);
    return done.result;
  }, (err: unknown) => {
    observation.fail(err);
    throw err;
  });
}

function resultOf<T>(done: Reported<T>): T {
  return done.result;
}

/**
 * Runs an observer hook. A hook that throws must not turn a committed write into a rejection,
 * nor report one operation twice: its error is dropped, and surfaces as a process warning.
 */
function safely(hook: () => void): void {
  try {
    hook();
  } catch (err) {
    process.emitWarning(`redis-consensus: an observer hook threw: ${(err as Error)?.message ?? String(err)}`);
  }
}
