/**
 * The error model. Invalid arguments are TypeError/RangeError (retrying cannot help); everything
 * about the store failing is an ExternalError that says whether the operation certainly did not
 * take effect (determinate) or might have (indeterminate).
 */

/**
 * The store could not be asked, or did not answer.
 *
 * - `determinate: true`: the operation certainly did not take effect.
 * - `determinate: false`: a write may or may not have taken effect; re-read to learn the outcome.
 *
 * The message starts with `determinate: ` or `indeterminate: `.
 */
export class ExternalError extends Error {
  /** True when the operation certainly did not take effect. */
  readonly determinate: boolean;
  /** How many times the command was sent or tried (retries included); 0 when it never was. */
  readonly attempts: number;

  constructor(determinate: boolean, message: string, options?: { cause?: unknown; attempts?: number }) {
    super(`${determinate ? 'determinate' : 'indeterminate'}: ${message}`,
      options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ExternalError';
    this.determinate = determinate;
    this.attempts = options?.attempts ?? 0;
  }
}

/** An operation that certainly did not take effect. */
export function determinate(message: string, cause?: unknown, attempts?: number): ExternalError {
  return new ExternalError(true, message, { cause, attempts });
}

/** A write that may or may not have taken effect. */
export function indeterminate(message: string, cause?: unknown, attempts?: number): ExternalError {
  return new ExternalError(false, message, { cause, attempts });
}

/**
 * Redis error codes that are returned before a command runs: the command had no effect. Anything
 * else coming back from a script may have been raised half-way through it.
 */
const REFUSED_BEFORE_RUNNING = new Set([
  'NOSCRIPT', 'OOM', 'READONLY', 'BUSY', 'LOADING', 'MOVED', 'ASK', 'TRYAGAIN', 'CLUSTERDOWN',
  'CROSSSLOT', 'NOPERM', 'NOAUTH', 'WRONGPASS', 'MASTERDOWN', 'MISCONF', 'NOREPLICAS', 'EXECABORT',
]);

/** ioredis's messages for a command it refused to send: it never left the process. */
const NEVER_SENT = [
  "Stream isn't writeable",
  "Cluster isn't ready",
  'None of startup nodes is available',
  'Failed to refresh slots cache',
  // A Cluster gives up after maxRedirections replies that each refused the command (MOVED, ASK,
  // TRYAGAIN, CLUSTERDOWN; e.g. TRYAGAIN while a migration has split a script's keys). Write
  // clients have retryDelayOnFailover 0, so a closed connection never joins that chain.
  'Too many Cluster redirections',
];

/** Whether a failure known to be of a command that never ran. */
export function knownNotRun(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'ReplyError') {
    const code = err.message.split(' ', 1)[0] ?? '';
    return REFUSED_BEFORE_RUNNING.has(code);
  }
  return NEVER_SENT.some((text) => err.message.includes(text));
}

/**
 * Turns whatever a call failed with into an ExternalError. A read never changes anything, so its
 * failures are always determinate; a write's are determinate only when it is known not to have
 * run.
 */
export function toExternal(err: unknown, isWrite: boolean, what: string, attempts?: number): ExternalError {
  if (err instanceof ExternalError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  if (!isWrite || knownNotRun(err)) return determinate(`${what} failed: ${detail}`, err, attempts);
  return indeterminate(`${what} failed after it was sent: ${detail}`, err, attempts);
}
