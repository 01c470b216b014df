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
import { codeOf, determinate } from './errors.js';

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
  nodes?(role?: 'all'): RedisClient[];
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

/** The Redis a `connect()` without a URL reaches. */
export const DEFAULT_URL = 'redis://127.0.0.1:6379';

/**
 * Options that make an ioredis connection safe for writes: a command in flight when the
 * connection breaks is never re-sent (its outcome is unknown, and the Link reports that), and a
 * command that cannot be written now fails at once instead of waiting in the offline queue, to
 * be sent after a reconnect, perhaps after its caller was told it failed.
 */
export const SAFE_WRITE_OPTIONS = { autoResendUnfulfilledCommands: false, enableOfflineQueue: false } as const;

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
  if (client.isCluster) {
    return duplicate.call(client, [], safeClusterOptions(client.options as ClusterOptions | undefined));
  }
  return duplicate.call(client, SAFE_WRITE_OPTIONS);
}

/**
 * Connects a client the library made (created with `lazyConnect`) and waits until it is ready.
 * ioredis rejects a failed first connection with "Connection is closed."; the error event before
 * that says why, and is what the ExternalError reports. Later connection errors surface on the
 * calls that meet them, while ioredis reconnects by itself.
 *
 * @throws ExternalError (determinate) when it cannot connect; the client is then disconnected.
 */
export async function openClient<C extends { connect(): Promise<unknown>; disconnect(): void; on(event: 'error', listener: (err: Error) => void): unknown }>(
  client: C, where: string,
): Promise<C> {
  let lastError: Error | undefined;
  client.on('error', (err) => {
    lastError = err;
  });
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    const cause = lastError ?? err;
    throw determinate(codeOf(cause), `could not connect to ${where}: ${(cause as Error).message}`, cause);
  }
  return client;
}

/** A Redis URL without its credentials, for messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    // ioredis also takes options from the query, `?password=` among them.
    parsed.search = '';
    return parsed.href.replace(/\/$/, '');
  } catch {
    return '(an unparseable Redis URL)';
  }
}

/** How long `close()` waits for a quit connection to end before it disconnects it. */
const QUIT_WAIT_MS = 1000;

/**
 * Quits a connection the library made and waits until it has ended (QUIT's reply comes before
 * the socket closes), disconnecting it if it does not end in time.
 */
export async function quit(client: RedisClient): Promise<void> {
  const ended = isConnection(client) && client.status !== 'end'
    ? new Promise<void>((resolve) => client.once?.('end', () => resolve()))
    : undefined;
  try {
    await client.quit();
  } catch {
    client.disconnect?.();
  }
  if (ended === undefined || client.status === 'end') return;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      client.disconnect?.();
      resolve();
    }, QUIT_WAIT_MS);
  });
  await Promise.race([ended, late]);
  clearTimeout(timer);
}
