/**
 * The client: what the library needs of an ioredis-like client, how it opens its own, how it
 * quits them, and the extra connection it makes for writes when a client it was given would
 * re-send commands after a reconnect.
 *
 * ioredis, left to itself, re-sends commands that were in flight when a connection broke: a
 * compare-and-set that committed would run again and report ExpectationMismatch. With
 * `autoResendUnfulfilledCommands: false` it instead drops them without ever settling their
 * promises (the Link fails them). A Cluster re-sends a command whose node closed under it unless
 * `retryDelayOnFailover` is 0; redirects that Redis answers before running a command (MOVED, ASK,
 * TRYAGAIN, CLUSTERDOWN) are still followed.
 */
import type { ClusterOptions } from 'ioredis';
import { debug } from './debug.js';
import { codeOf, determinate } from './errors.js';
import { guardSockets } from './internals.js';

/**
 * What the library needs of a client: ioredis `Redis` or `Cluster` (5 or 6), ioredis-mock, or any
 * client with the same API. Typed structurally and loosely, so that a user's own client fits
 * without a cast whichever ioredis copy its type comes from. Methods of scripts defined with
 * `defineCommand` are looked up by name.
 */
export interface RedisClient {
  /** Defines a Lua script as a command (ioredis `defineCommand`). */
  defineCommand(name: string, definition: { lua: string; numberOfKeys: number }): void;
  /** Walks a set (the key registry), page by page. */
  sscan(key: string, cursor: string, countToken: 'COUNT', count: number): Promise<[cursor: string, elements: string[]]>;
  /** One round trip (`ping()`). */
  ping(): Promise<unknown>;
  /** Closes the connection politely (clients the library created). */
  quit(): Promise<unknown>;
  /** Sends any command (`WAIT` for durability). */
  call?(command: string, ...args: (string | number | Buffer)[]): Promise<unknown>;
  /** Sends any command, its reply as Buffers (`EVALSHA_RO` of the read scripts). */
  callBuffer?(command: string, ...args: (string | number | Buffer)[]): Promise<unknown>;
  /** Closes the connection at once, when `quit` fails. */
  disconnect?(): void;
  /** A new connection like this one: the library's write connection. */
  duplicate?(...args: never[]): RedisClient;
  /** Connects a client made with `lazyConnect`. */
  connect?(): Promise<unknown>;
  /** Listens to connection events (`close`, `ready`, Cluster `+node`). */
  on?(event: string, listener: (...args: unknown[]) => void): unknown;
  /** Stops listening. */
  off?(event: string, listener: (...args: unknown[]) => void): unknown;
  /** Listens to one event once. */
  once?(event: string, listener: (...args: unknown[]) => void): unknown;
  /** A Cluster's node connections. */
  nodes?(role?: 'all' | 'master'): RedisClient[];
  /** ioredis's connection status (`ready`, `reconnecting`, `end`...); ioredis-mock has none. */
  readonly status?: string;
  /** True for an ioredis `Cluster`. */
  readonly isCluster?: boolean;
  /** The client's options, read to learn whether it re-sends commands after a reconnect. */
  readonly options?: object;
}

/** The options of a client that the library reads. */
interface ClientOptions {
  autoResendUnfulfilledCommands?: boolean;
  redisOptions?: { autoResendUnfulfilledCommands?: boolean };
  retryDelayOnFailover?: number;
  clusterNodeRetryStrategy?: unknown;
}

/** A client's options as far as the library reads them. */
export function optionsOf(client: RedisClient): ClientOptions {
  return (client.options ?? {}) as ClientOptions;
}

/**
 * The ioredis `keyPrefix` of a client ('' without one): ioredis puts it before every KEY of a
 * command (the scripts' KEYS too) but not before a channel passed as an argument, so the library
 * adds it itself where a name is not a KEY (the heads channel). A Cluster takes it from its own
 * options, or else from `redisOptions`, as ioredis does.
 *
 * @throws TypeError for a Buffer prefix that is not UTF-8 text (a channel name is a string here).
 */
export function keyPrefixOf(client: RedisClient): string {
  const options = (client.options ?? {}) as { keyPrefix?: unknown; redisOptions?: { keyPrefix?: unknown } };
  const prefix = options.keyPrefix || (client.isCluster === true ? options.redisOptions?.keyPrefix : undefined) || '';
  if (typeof prefix === 'string') return prefix;
  if (Buffer.isBuffer(prefix)) {
    const text = prefix.toString('utf8');
    if (Buffer.from(text, 'utf8').equals(prefix)) return text;
  }
  throw new TypeError('the client\'s keyPrefix must be a string (or a Buffer of UTF-8 text): the channel ' +
    'that compareAndSet announces commits on, for watch, is named with it');
}

/** The Redis a `connect()` without a URL reaches. */
export const DEFAULT_URL = 'redis://127.0.0.1:6379';

/**
 * Options that make an ioredis connection safe for writes: a command in flight when the
 * connection breaks is never re-sent (its outcome is unknown, and the Link reports that), and a
 * command that cannot be written now fails at once instead of waiting in the offline queue, to
 * be sent after a reconnect, perhaps after its caller was told it failed.
 */
export const SAFE_WRITE_OPTIONS = { autoResendUnfulfilledCommands: false, enableOfflineQueue: false } as const;

/**
 * What the library's own connections (`connect`, `connectCluster`'s nodes) are tested with, set
 * explicitly so that a new ioredis major's defaults change nothing: RESP2 (ioredis 6 speaks RESP3
 * by default; ioredis 5 has no such option and speaks RESP2), ioredis 5's reconnect schedule (50 ms
 * more per attempt, at most 2 s; calls wait for a reconnect within their deadline), and no TCP
 * keep-alive (ioredis 6 turns it on; deadlines, not keep-alive, find a dead connection). And a
 * short `disconnectTimeout`: ioredis's default, 2 s, holds a timer (twice, when the ready check
 * fails after the disconnect) that keeps the process alive for seconds after a connect that gave
 * up on a server that never answers. Unlike SAFE_WRITE_OPTIONS, the caller's ioredis options may
 * override these.
 */
export const OWN_CONNECTION_DEFAULTS = {
  protocol: 2,
  retryStrategy: (attempt: number) => Math.min(attempt * 50, 2000),
  keepAlive: 0,
  disconnectTimeout: 100,
} as const;

/** Cluster options that make an ioredis Cluster safe for writes (node options apart). */
export const SAFE_CLUSTER_OPTIONS = { retryDelayOnFailover: 0 } as const;

/** `options` with what makes a Cluster never re-send a write, on the cluster and on its nodes. */
export function safeClusterOptions(options: ClusterOptions = {}): ClusterOptions {
  return {
    ...options,
    ...SAFE_CLUSTER_OPTIONS,
    redisOptions: { ...options.redisOptions, ...SAFE_WRITE_OPTIONS },
  };
}

/** Whether a client is a real ioredis connection (ioredis-mock has no connection status). */
export function isConnection(client: RedisClient): boolean {
  return typeof client.status === 'string';
}

/** Whether ioredis will never re-send this client's commands after a reconnect. */
export function resendsNothing(client: RedisClient): boolean {
  if (!isConnection(client)) return true;
  const options = optionsOf(client);
  if (client.isCluster) {
    return options.redisOptions?.autoResendUnfulfilledCommands === false && options.retryDelayOnFailover === 0;
  }
  return options.autoResendUnfulfilledCommands === false;
}

/** A connection like `client` for writes only, that never re-sends a command. */
export function duplicateForWrites(client: RedisClient): RedisClient {
  const duplicate = client.duplicate as ((...args: unknown[]) => RedisClient) | undefined;
  if (typeof duplicate !== 'function') {
    throw new TypeError('the client re-sends commands after reconnects and cannot be duplicated');
  }
  const writer = client.isCluster
    ? duplicate.call(client, [], safeClusterOptions(client.options as ClusterOptions | undefined))
    : duplicate.call(client, SAFE_WRITE_OPTIONS);
  guardSockets(writer);
  return writer;
}

/** The write connection made for a client passed in, shared by every store that wraps it. */
interface SharedWriter {
  readonly writer: RedisClient;
  /** Stores using it; the last to release it quits it. */
  users: number;
  /** Stops ending it when the caller's client ends. */
  readonly unfollow: () => void;
}

const sharedWriters = new WeakMap<RedisClient, SharedWriter>();

/**
 * The write connection for a client passed in that would re-send commands: one per client, shared
 * by every store that wraps it (50 stores on one client open one extra connection, not 50), and
 * following the client: when the caller's client ends (they quit it without closing the stores),
 * the write connection is disconnected too, so it never keeps the process alive by itself.
 * Release it with `releaseWriter`.
 */
export function acquireWriter(client: RedisClient): RedisClient {
  let shared = sharedWriters.get(client);
  if (shared === undefined || shared.writer.status === 'end') {
    const writer = duplicateForWrites(client);
    writer.on?.('error', (err: unknown) => {
      // Connection errors surface on the calls that meet them; ioredis reconnects by itself.
      debug('write connection: %s', err instanceof Error ? err.message : String(err));
    });
    const follow = (): void => {
      debug('the client passed in ended: ending its write connection');
      writer.disconnect?.();
    };
    client.on?.('end', follow);
    shared = { writer, users: 0, unfollow: () => client.off?.('end', follow) };
    sharedWriters.set(client, shared);
    debug('opened an extra write connection (the client passed in re-sends commands after reconnects)');
  }
  shared.users++;
  return shared.writer;
}

/** Releases a store's use of the shared write connection; the last user quits it. */
export async function releaseWriter(client: RedisClient, writer: RedisClient): Promise<void> {
  const shared = sharedWriters.get(client);
  if (shared === undefined || shared.writer !== writer) {
    // Replaced after it ended: this store was its last user.
    await quit(writer);
    return;
  }
  if (--shared.users > 0) return;
  sharedWriters.delete(client);
  shared.unfollow();
  debug('quitting the extra write connection: its last store closed');
  await quit(writer);
}

/** What a client the library opens must offer to be opened within a deadline. */
export interface Openable {
  connect(): Promise<unknown>;
  disconnect(): void;
  on(event: 'error', listener: (err: Error) => void): unknown;
}

/** How `openClient` bounds the opening: a deadline, the caller's signal, checks to pass. */
export interface OpenOptions<C> {
  /** How long connecting and the checks may take, in ms. */
  readonly timeoutMs: number;
  /** The caller's AbortSignal: aborting gives up, determinate. */
  readonly signal?: AbortSignal | undefined;
  /** Runs once the client is ready, within the same deadline; throws to refuse the client. */
  readonly check?: ((client: C) => Promise<void>) | undefined;
}

/**
 * Connects a client the library made (created with `lazyConnect`), waits until it is ready and
 * runs `check`, all within `timeoutMs`. ioredis's own `connectTimeout` covers the TCP connect only:
 * a server that accepts and never answers (a black hole, a SIGSTOPped process) leaves its ready
 * check waiting forever, so the deadline is the library's. ioredis rejects a failed first
 * connection with "Connection is closed."; the error event before that says why, and is what the
 * ExternalError reports. Later connection errors surface on the calls that meet them, while
 * ioredis reconnects by itself.
 *
 * @throws ExternalError (determinate) when it cannot connect in time (`timeout`), the signal
 *   aborts (`aborted`), or the check refuses; the client is then disconnected and holds no timer
 *   or socket.
 */
export async function openClient<C extends Openable>(client: C, where: string, options: OpenOptions<C>): Promise<C> {
  const { timeoutMs, signal, check } = options;
  let lastError: Error | undefined;
  // The first protocol error: what a service that is not Redis gets, before later errors of the
  // reconnects (`Stream isn't writeable`) overwrite lastError.
  let protocolError: Error | undefined;
  client.on('error', (err) => {
    lastError = err;
    if (/Protocol error/i.test(err.message)) protocolError ??= err;
    debug('connection to %s: %s', where, err.message);
  });
  const because = (): string => (lastError === undefined ? '' : ` (last error: ${lastError.message})`);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const givenUp = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(determinate('timeout',
      `could not connect to ${where}: no answer within ${timeoutMs} ms${because()}`, lastError)), timeoutMs);
    onAbort = () => reject(determinate('aborted', `connecting to ${where} was aborted${because()}`, signal?.reason));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  try {
    if (signal?.aborted === true) onAbort!();
    const opened = (async () => {
      try {
        await client.connect();
      } catch (err) {
        const cause = lastError ?? err;
        const code = codeOf(cause);
        throw determinate(code === 'permission' ? code : 'unavailable',
          `could not connect to ${where}: ${(cause as Error).message}`, cause);
      }
      await check?.(client);
    })();
    // Whichever settles first; the other's rejection is handled by the race.
    await Promise.race([opened, givenUp]);
  } catch (err) {
    client.disconnect();
    // A service that is not Redis (a web server on the port) fails the first command with a
    // protocol error, after which the connection is gone and later errors say only that: say why.
    if (protocolError !== undefined) {
      throw determinate('unavailable', `could not connect to ${where}: ${protocolError.message}`, protocolError);
    }
    throw err;
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
  }
  debug('connected to %s', where);
  return client;
}

/**
 * A Redis URL without its credentials, for messages: no username, password or query (ioredis also
 * takes options from the query, `?password=` among them), nor a path that could be a misplaced
 * password. A URL that cannot be parsed is not shown at all: where its credentials end is unknown.
 */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return '(an unparseable Redis URL)';
  }
  // Without `//host`, what follows the scheme is a path, and may be `:password@host`.
  if (parsed.host === '') return `(a ${parsed.protocol} URL without a host)`;
  parsed.username = '';
  parsed.password = '';
  parsed.search = '';
  parsed.hash = '';
  if (/[^/\d]/.test(parsed.pathname)) parsed.pathname = '/...';
  return parsed.href.replace(/\/$/, '');
}

/** How long `close()` waits for QUIT's reply and the connection's end before it disconnects. */
export const QUIT_WAIT_MS = 1000;

/**
 * Quits a connection the library made and waits until it has ended (QUIT's reply comes before
 * the socket closes), disconnecting it when that does not happen within QUIT_WAIT_MS: a stalled
 * Redis never answers QUIT, and `close()` must settle anyway.
 */
export async function quit(client: RedisClient): Promise<void> {
  const ended = isConnection(client) && client.status !== 'end'
    ? new Promise<void>((resolve) => client.once?.('end', () => resolve()))
    : undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), QUIT_WAIT_MS);
  });
  const quitted = client.quit().then(() => ended, () => {
    client.disconnect?.();
  });
  if (await Promise.race([quitted, late]) === 'late') {
    debug('QUIT had no answer within %d ms: disconnecting', QUIT_WAIT_MS);
    client.disconnect?.();
  }
  clearTimeout(timer);
}
