/**
 * The error model. Invalid arguments are TypeError/RangeError (retrying cannot help); everything
 * about the store failing is an ExternalError that says whether the operation certainly did not
 * take effect (determinate) or might have (indeterminate).
 */

import { debug } from './debug.js';

/**
 * Why an ExternalError happened, stable for programs to branch on (messages may change):
 *
 * | code | meaning |
 * |---|---|
 * | `timeout` | no reply within the call's deadline (or the connect deadline, or an append's `timeoutMs`) |
 * | `attempts-exhausted` | an append made `maxAttempts` attempts and lost every race |
 * | `connection-lost` | the connection closed while the call was in flight |
 * | `unavailable` | Redis could not be reached or refused for now (LOADING, BUSY, READONLY, CLUSTERDOWN...) |
 * | `closed` | this store was closed |
 * | `aborted` | the caller's `AbortSignal` fired |
 * | `truncate-above-head` | `truncate` above the head, or of a key with no data |
 * | `scan-truncated` | a streamed scan (`scanStream`) met a truncate that removed versions it had not read yet |
 * | `replicas-short` | a write committed on the primary but replicas did not confirm it |
 * | `store-reset` | the store's data was reset under it (an epoch marker gone); until acknowledged |
 * | `store-rollback` | commits this process had seen in the bucket are gone (a failover lost them); until acknowledged |
 * | `payload-missing` | a version's seqno is stored without its payload (evicted or deleted) |
 * | `truncated` | `follow` cannot read versions it owes: they may have been truncated (see `TruncatedError`) |
 * | `permission` | an ACL refused a command or key (NOPERM, NOAUTH, WRONGPASS) |
 * | `out-of-memory` | Redis is at `maxmemory` and refused to write (OOM) |
 * | `eviction-policy` | the server's `maxmemory-policy` may evict the store's keys |
 * | `wrong-database` | the database the URL names does not exist on the server |
 * | `redis-error` | any other error Redis or the client reported |
 */
export type ExternalErrorCode =
  | 'timeout' | 'attempts-exhausted' | 'connection-lost' | 'unavailable' | 'closed' | 'aborted' | 'truncate-above-head'
  | 'replicas-short' | 'store-reset' | 'store-rollback' | 'payload-missing' | 'permission' | 'out-of-memory'
  | 'eviction-policy' | 'wrong-database' | 'redis-error'
  | 'scan-truncated' | 'truncated';

/**
 * The store could not be asked, or did not answer.
 *
 * - `determinate: true`: the operation certainly did not take effect.
 * - `determinate: false`: a write may or may not have taken effect; re-read to learn the outcome.
 *
 * The message starts with `determinate: ` or `indeterminate: `. Every code, when it happens and
 * what to do: docs/errors.md.
 *
 * Its `cause` (the client's error, when there is one) is a redacted copy when the original carried
 * credentials: ioredis attaches the failed command to its errors, and for `AUTH` or `HELLO` that is
 * the password (`console.error(err)` would print it).
 */
export class ExternalError extends Error {
  /** True when the operation certainly did not take effect. */
  readonly determinate: boolean;
  /** How many times the command was sent or tried (retries included); 0 when it never was. */
  readonly attempts: number;
  /** Why, as a stable code to branch on (see `ExternalErrorCode`). */
  readonly code: ExternalErrorCode;

  constructor(
    determinate: boolean, message: string,
    options?: { cause?: unknown; attempts?: number; code?: ExternalErrorCode },
  ) {
    super(`${determinate ? 'determinate' : 'indeterminate'}: ${message}`,
      options?.cause === undefined ? undefined : { cause: redactCause(options.cause) });
    this.name = 'ExternalError';
    this.determinate = determinate;
    this.attempts = options?.attempts ?? 0;
    this.code = options?.code ?? 'redis-error';
  }
}

/** Commands whose arguments carry credentials (`AUTH user pass`, `HELLO 3 AUTH user pass`, ...). */
const SECRET_COMMANDS = new Set(['auth', 'hello', 'migrate', 'acl', 'config']);

/** Secrets shorter than this are not scrubbed from text: they would garble every message. */
const SHORTEST_SCRUBBED = 4;

/** What stands for a secret in a redacted error. */
const REDACTED = '[redacted]';

/**
 * `cause` made safe to show: an error is copied (same prototype, so `instanceof` and `name` hold)
 * when it, or an error in its cause chain, carries a command with credentials (ioredis's
 * `command: { name: 'auth', args: [user, password] }`) or contains one of `secrets` in its text;
 * the copy has those arguments and secrets replaced. Anything else is returned as it is.
 */
export function redactCause(cause: unknown, secrets: readonly string[] = [], depth = 0): unknown {
  const scrubbed = secrets.filter((secret) => secret.length >= SHORTEST_SCRUBBED);
  if (typeof cause === 'string') return scrubText(cause, scrubbed);
  if (!(cause instanceof Error) || depth > 8 || !carriesSecret(cause, scrubbed, depth)) return cause;
  const copy = Object.create(Object.getPrototypeOf(cause) as object) as Error;
  for (const name of Reflect.ownKeys(cause)) {
    const descriptor = Object.getOwnPropertyDescriptor(cause, name)!;
    if (name === 'stack' && !('value' in descriptor)) {
      // An accessor on some engines: read it, as text, here.
      Object.defineProperty(copy, name, { value: scrubText(String(cause.stack), scrubbed), writable: true, configurable: true });
      continue;
    }
    if ('value' in descriptor) {
      const value: unknown = descriptor.value;
      if (name === 'command' && isSecretCommand(value)) {
        descriptor.value = { ...value, args: value.args.map(() => REDACTED) };
      } else if (name === 'cause') {
        descriptor.value = redactCause(value, scrubbed, depth + 1);
      } else if (typeof value === 'string') {
        descriptor.value = scrubText(value, scrubbed);
      } else if (name !== 'message' && name !== 'stack' && typeof value === 'object' && value !== null) {
        // Other objects (a client's options, buffers) may hold anything: not copied along.
        continue;
      }
    }
    Object.defineProperty(copy, name, descriptor);
  }
  return copy;
}

function isSecretCommand(value: unknown): value is { name: string; args: unknown[] } {
  const command = value as { name?: unknown; args?: unknown } | null;
  return typeof command?.name === 'string' && SECRET_COMMANDS.has(command.name.toLowerCase()) && Array.isArray(command.args);
}

function carriesSecret(err: Error, secrets: readonly string[], depth: number): boolean {
  if (isSecretCommand((err as { command?: unknown }).command)) return true;
  for (const name of Reflect.ownKeys(err)) {
    const value: unknown = (err as unknown as Record<string | symbol, unknown>)[name];
    if (typeof value === 'string' && secrets.some((secret) => value.includes(secret))) return true;
  }
  const cause: unknown = err.cause;
  if (typeof cause === 'string') return secrets.some((secret) => cause.includes(secret));
  return cause instanceof Error && depth < 8 && carriesSecret(cause, secrets, depth + 1);
}

function scrubText(text: string, secrets: readonly string[]): string {
  let scrubbed = text;
  for (const secret of secrets) scrubbed = scrubbed.split(secret).join(REDACTED);
  return scrubbed;
}

/** An operation that certainly did not take effect. */
export function determinate(code: ExternalErrorCode, message: string, cause?: unknown, attempts?: number): ExternalError {
  return new ExternalError(true, message, { cause, attempts, code });
}

/** A write that may or may not have taken effect. */
export function indeterminate(code: ExternalErrorCode, message: string, cause?: unknown, attempts?: number): ExternalError {
  const err = new ExternalError(false, message, { cause, attempts, code });
  debug('indeterminate (%s): %s', code, err.message);
  return err;
}

/**
 * Codes of failures that retrying within one call cannot mend: an ACL, a full memory, a closed
 * store, the caller's abort, or the data itself. Retrying these would only delay the answer.
 */
const NOT_RETRIED: ReadonlySet<ExternalErrorCode> = new Set<ExternalErrorCode>([
  'permission', 'out-of-memory', 'closed', 'aborted', 'truncate-above-head', 'payload-missing',
  'store-reset', 'store-rollback', 'eviction-policy', 'wrong-database', 'truncated',
]);

/** Whether a determinate failure is worth another attempt. */
export function retryable(err: ExternalError): boolean {
  return err.determinate && !NOT_RETRIED.has(err.code);
}

/**
 * Redis error codes that are returned before a command runs: the command had no effect. Anything
 * else coming back from a script may have been raised half-way through it.
 *
 * OOM and NOPERM deserve a word, as both can come from inside a script (measured on Redis 7.0):
 * - OOM: a script without flags (ours have none, for ioredis-mock) is checked when it first calls
 *   a command that may grow memory, and only "if this is the first write in the context of this
 *   script, otherwise we'd break atomicity" (Redis's `scriptVerifyOOM`: it skips the check once
 *   the script has written). So an OOM reply, even one that names a script, means the script had
 *   written nothing: determinate. Older Redis checks EVAL/EVALSHA before running it: same answer.
 * - NOPERM is raised before running: for the EVALSHA command itself or for the KEYS it declares
 *   ("no permissions to access one of the keys used as arguments"). A command the ACL denies
 *   *inside* a script comes back as `ERR The user executing the script can't run this command`,
 *   possibly after the script wrote (an SADD before a denied ZADD stays): that one is not known
 *   not to have run, and stays indeterminate for writes (code `permission`, never retried).
 * - NOAUTH and WRONGPASS: the connection is not authenticated; nothing runs.
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

/** Reply codes and the ExternalError code each maps to; the rest of REFUSED are `unavailable`. */
const REPLY_CODES: Readonly<Record<string, ExternalErrorCode>> = {
  NOPERM: 'permission', NOAUTH: 'permission', WRONGPASS: 'permission', OOM: 'out-of-memory',
};

/** ACL denial of a command inside a script (Redis 7: `ERR The user executing the script can't run...`). */
const DENIED_IN_SCRIPT = /can't run this command|no permissions to run/;

/** The ExternalError code of whatever a call failed with. */
export function codeOf(err: unknown): ExternalErrorCode {
  if (!(err instanceof Error)) return 'redis-error';
  if (err.name === 'ReplyError') {
    const code = err.message.split(' ', 1)[0] ?? '';
    if (REPLY_CODES[code] !== undefined) return REPLY_CODES[code];
    if (REFUSED_BEFORE_RUNNING.has(code)) return 'unavailable';
    return DENIED_IN_SCRIPT.test(err.message) ? 'permission' : 'redis-error';
  }
  if (NEVER_SENT.some((text) => err.message.includes(text))) return 'unavailable';
  if (err.message.includes('Command timed out')) return 'timeout';
  if (err.message.includes('Connection is closed')) return 'connection-lost';
  return 'redis-error';
}

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
  const code = codeOf(err);
  if (!isWrite || knownNotRun(err)) return determinate(code, `${what} failed: ${detail}`, err, attempts);
  return indeterminate(code, `${what} failed after it was sent: ${detail}`, err, attempts);
}
