/**
 * The link to Redis: which connection carries reads and which carries writes, deadlines, bounded
 * retries of failures known not to have run, and failing writes whose connection broke under them.
 *
 * ioredis, left to itself, re-sends commands that were in flight when a connection broke: a
 * compare-and-set that committed would run again and report ExpectationMismatch. With
 * `autoResendUnfulfilledCommands: false` it instead drops them without ever settling their
 * promises. So every write goes over a connection with that option, waits for the connection to
 * be ready instead of sitting in an offline queue, and is failed here, as indeterminate, when its
 * connection closes or its deadline passes.
 */
import type { ClusterOptions } from 'ioredis';
import { AskingLog, safeClusterOptions } from './cluster.js';
import { coalesceWrites } from './batching.js';
import { Deadlines } from './deadlines.js';
import { Slots } from './slots.js';
import type { Slotted } from './slots.js';
import { determinate, ExternalError, indeterminate, toExternal } from './errors.js';
import type { ScriptHost } from './scripts.js';

/**
 * What the library needs of a client: ioredis `Redis`, `Cluster`, or ioredis-mock. Methods of
 * scripts defined with `defineCommand` are looked up by name.
 */
export interface RedisClient extends ScriptHost {
  /** Walks a set (the key registry), page by page. */
  sscan(key: string, cursor: string | number, ...args: (string | number)[]): Promise<[string, string[]]>;
  /** One round trip (`ping()`). */
  ping(): Promise<unknown>;
  /** Sends any command (`WAIT` for durability). */
  call?(command: string, ...args: (string | number | Buffer)[]): Promise<unknown>;
  /** Closes the connection politely (clients the library created). */
  quit(): Promise<unknown>;
  /** Closes the connection at once, when `quit` fails. */
  disconnect?(): void;
  /** A new connection like this one: the library's write connection. */
  duplicate?(...args: unknown[]): RedisClient;
  /** Connects a client made with `lazyConnect`. */
  connect?(): Promise<unknown>;
  /** Listens to connection events (`close`, `ready`, Cluster `+node`). */
  on?(event: string, listener: (...args: unknown[]) => void): unknown;
  /** Stops listening. */
  off?(event: string, listener: (...args: unknown[]) => void): unknown;
  /** Listens to one event once. */
  once?(event: string, listener: (...args: unknown[]) => void): unknown;
  /** A Cluster's node connections. */
  nodes?(role?: string): RedisClient[];
  /** ioredis's connection status (`ready`, `reconnecting`, `end`...); ioredis-mock has none. */
  status?: string;
  /** True for an ioredis `Cluster`. */
  isCluster?: boolean;
  /** The client's options, read to learn whether it re-sends commands after a reconnect. */
  options?: {
    /** Whether ioredis re-sends commands in flight after a reconnect. */
    autoResendUnfulfilledCommands?: boolean;
    /** Whether commands wait in a queue while disconnected. */
    enableOfflineQueue?: boolean;
    /** A Cluster's options for its node connections. */
    redisOptions?: {
      /** Whether the Cluster's node connections re-send commands in flight after a reconnect. */
      autoResendUnfulfilledCommands?: boolean;
    };
    /** A Cluster's delay before retrying a command after a failover. */
    retryDelayOnFailover?: number;
  };
}

/** Bounded retries, with exponential backoff and jitter, of failures known not to have run. */
export interface RetryOptions {
  /** Attempts in all, the first included. Default 5; 1 disables retries. */
  attempts?: number;
  /** Delay before the first retry, in ms. Default 10. */
  minDelayMs?: number;
  /** Longest delay between attempts, in ms. Default 500. */
  maxDelayMs?: number;
}

export const DEFAULT_RETRY: Required<RetryOptions> = { attempts: 5, minDelayMs: 10, maxDelayMs: 500 };

/**
 * Options that make an ioredis connection safe for writes: a command in flight when the
 * connection breaks is never re-sent (its outcome is unknown, and the Link reports that), and a
 * command that cannot be written now fails at once instead of waiting in the offline queue, to
 * be sent after a reconnect, perhaps after its caller was told it failed.
 */
export const SAFE_WRITE_OPTIONS = { autoResendUnfulfilledCommands: false, enableOfflineQueue: false } as const;

interface InFlight extends Slotted {
  isWrite: boolean;
  fail(err: ExternalError): void;
}

/** What the Link knows of one connection (or one Cluster client). */
interface Connection {
  /** Calls sent on it and not settled yet. */
  readonly inFlight: Slots<InFlight>;
  /** Whether the library made it (and so may cork its socket). */
  readonly owned: boolean;
  /** The last connection error seen (owned connections only), for messages. */
  lastError: string | undefined;
  /** Settles when the connection next becomes ready or ends; set while calls wait for that. */
  change?: Promise<void> | undefined;
}

/** Where a write may run, noted just before it is sent (see `Link.writeMark`). */
export interface WriteMark {
  /** The point of the Cluster's ASKING log. */
  readonly asked: number;
  /** The connection to the slot's primary then. */
  readonly primary: RedisClient | undefined;
}

/** Whether a client is a real ioredis connection (ioredis-mock has no connection status). */
function isConnection(client: RedisClient): boolean {
  return typeof client.status === 'string';
}

/** Whether ioredis will never re-send this client's commands after a reconnect. */
function resendsNothing(client: RedisClient): boolean {
  if (!isConnection(client)) return true;
  if (client.isCluster) {
    // A Cluster re-sends a command whose node closed under it unless retryDelayOnFailover is 0.
    return client.options?.redisOptions?.autoResendUnfulfilledCommands === false &&
      client.options.retryDelayOnFailover === 0;
  }
  return client.options?.autoResendUnfulfilledCommands === false;
}

export class Link {
  /** Carries reads. */
  readonly reader: RedisClient;
  /** Carries writes: never re-sends a command after a reconnect. */
  readonly writer: RedisClient;
  private readonly owned: RedisClient[] = [];
  private readonly connections = new Map<RedisClient, Connection>();
  private readonly watched: Array<[RedisClient, string, (...args: unknown[]) => void]> = [];
  private closed = false;
  /** Cluster writers: which nodes were sent ASKING, for WAIT after ASK redirects. */
  private readonly asking: AskingLog | undefined;
  /** One timer for the deadlines of every call in flight (see deadlines.ts). */
  private readonly deadlines = new Deadlines();

  /**
   * @param client  the client to use.
   * @param owns    whether the library created `client` (and so closes it).
   */
  constructor(client: RedisClient, owns: boolean, private readonly retry: Required<RetryOptions>) {
    this.reader = client;
    if (owns) this.owned.push(client);
    if (resendsNothing(client)) {
      this.writer = client;
    } else {
      // A client we were given re-sends after reconnects; writes get their own connection.
      this.writer = duplicateForWrites(client);
      this.owned.push(this.writer);
      this.writer.on?.('error', () => {
        // Connection errors surface on the calls that meet them; ioredis reconnects by itself.
      });
    }
    this.watch(this.writer);
    if (this.reader !== this.writer) this.watch(this.reader);
    this.asking = this.writer.isCluster ? new AskingLog(this.writer) : undefined;
  }

  /**
   * Notes where a write to `routingKey`, about to be sent, may run: pass it to `waitForReplicas`
   * after the write. On a Cluster the slot's primary may change, or the write be redirected with
   * ASK, between the two.
   */
  writeMark(routingKey: string): WriteMark {
    if (this.asking === undefined) return { asked: 0, primary: undefined };
    let primary: RedisClient | undefined;
    try {
      primary = primaryFor(this.writer, routingKey);
    } catch {
      primary = undefined;
    }
    return { asked: this.asking.now(), primary };
  }

  /**
   * Runs one operation against Redis within `timeoutMs`, retrying failures known not to have
   * run, and maps every failure to an ExternalError.
   */
  run<T>(
    isWrite: boolean,
    what: string,
    timeoutMs: number,
    send: (client: RedisClient) => Promise<T>,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    const client = isWrite ? this.writer : this.reader;
    // The first attempt, which nearly always succeeds, without an async frame around it.
    return this.attempt(isWrite, what, client, deadline, timeoutMs, send)
      .catch((err: unknown) => this.retryAfter(err, isWrite, what, client, deadline, timeoutMs, send));
  }

  /** Retries after a failed first attempt, while it failed determinately and time is left. */
  private async retryAfter<T>(
    err: unknown,
    isWrite: boolean,
    what: string,
    client: RedisClient,
    deadline: number,
    timeoutMs: number,
    send: (client: RedisClient) => Promise<T>,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const failure = toExternal(err, isWrite, what);
      const delay = backoff(this.retry, attempt);
      if (!failure.determinate || this.closed) throw failure;
      if (attempt >= this.retry.attempts || Date.now() + delay >= deadline) {
        if (attempt === 1) throw failure;
        // Same kind and cause, and the caller learns that retrying did not help either.
        throw new ExternalError(true, `${failure.message.replace(/^determinate: /, '')} ` +
          `(gave up after ${attempt} attempts in ${timeoutMs - (deadline - Date.now())} ms)`,
        { cause: failure.cause });
      }
      await sleep(delay);
      try {
        return await this.attempt(isWrite, what, client, deadline, timeoutMs, send);
      } catch (next) {
        err = next;
      }
    }
  }

  /**
   * Sends one command once the connection is ready, tracked as in flight until it settles, its
   * connection closes or its deadline passes. Not async: on a ready connection (nearly always) a
   * call costs no extra promise or turn.
   */
  private attempt<T>(
    isWrite: boolean,
    what: string,
    client: RedisClient,
    deadline: number,
    timeoutMs: number,
    send: (client: RedisClient) => Promise<T>,
  ): Promise<T> {
    if (this.closed) return Promise.reject(determinate(`${what}: this RedisConsensus is closed`));
    // Reads wait too: a read parked in an offline queue would only answer after its deadline.
    if (client.status !== undefined && client.status !== 'ready') {
      return this.ready(client, what, deadline)
        .then(() => this.attempt(isWrite, what, client, deadline, timeoutMs, send));
    }
    const connection = this.connection(client);
    const inFlight = connection.inFlight;
    return new Promise<T>((resolve, reject) => {
      const entry: InFlight = { isWrite, fail: (err) => settle(() => reject(err)), slot: -1 };
      const expiry = this.deadlines.add(deadline, () => {
        entry.fail(isWrite
          ? indeterminate(`${what}: no reply within ${timeoutMs} ms; the write may or may not ` +
            'have been applied, re-read to learn which')
          : determinate(`${what}: no reply within ${timeoutMs} ms`));
      });
      let settled = false;
      const settle = (finish: () => void): void => {
        if (settled) return;
        settled = true;
        this.deadlines.delete(expiry);
        inFlight.delete(entry);
        finish();
      };
      inFlight.add(entry);
      let sent: Promise<T>;
      // Sockets the library owns send a burst of calls in one write; others' are left alone.
      if (connection.owned) coalesceWrites(client);
      try {
        sent = send(client);
      } catch (err) {
        settle(() => reject(err));
        return;
      }
      sent.then((value) => settle(() => resolve(value)), (err) => settle(() => reject(err)));
    });
  }

  /**
   * Waits until a connection can take a command now, rather than queue it to send after a
   * reconnect, or fails determinate at the deadline: nothing was sent.
   */
  private async ready(client: RedisClient, what: string, deadline: number): Promise<void> {
    if (!isConnection(client) || client.status === 'ready') return;
    const notConnected = (): ExternalError => {
      const cause = this.connection(client).lastError;
      return determinate(`${what}: not connected to Redis (connection ${client.status}` +
        `${cause === undefined ? '' : `, last error: ${cause}`}); nothing was sent`);
    };
    if (client.status === 'end') throw notConnected();
    // A client made with lazyConnect connects on its first command; nothing is sent until ready.
    if (client.status === 'wait') client.connect?.().catch(() => undefined);
    const connection = this.connection(client);
    // One pair of listeners per connection, however many calls wait for it (a burst of calls
    // on a connection that is not ready would otherwise exceed the emitter's listener limit).
    connection.change ??= new Promise<void>((resolve) => {
      const onChange = (): void => {
        client.off?.('ready', onChange);
        client.off?.('end', onChange);
        connection.change = undefined;
        resolve();
      };
      client.on?.('ready', onChange);
      client.on?.('end', onChange);
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
    });
    await Promise.race([connection.change, timedOut]);
    clearTimeout(timer);
    if (client.status !== 'ready') throw notConnected();
  }

  private connection(client: RedisClient): Connection {
    let connection = this.connections.get(client);
    if (connection === undefined) {
      connection = { inFlight: new Slots(), owned: this.owned.includes(client), lastError: undefined };
      this.connections.set(client, connection);
    }
    return connection;
  }

  /**
   * Fails what was in flight on a connection when it closes: with auto-resend off, ioredis never
   * settles it. Only that connection's calls: a read connection closing says nothing about writes.
   */
  private watch(client: RedisClient): void {
    if (!isConnection(client)) return;
    const connection = this.connection(client);
    const onClose = (): void => {
      const cause = connection.lastError === undefined ? '' : ` (${connection.lastError})`;
      // Slots iterates over a copy: failing an entry removes it.
      for (const entry of connection.inFlight) {
        entry.fail(entry.isWrite
          ? indeterminate(`the connection closed${cause} while the write was in flight; it may or ` +
            'may not have been applied, re-read to learn which')
          : determinate(`the connection closed${cause} while the read was in flight`));
      }
    };
    const listen = (emitter: RedisClient, event: string, listener: (...args: unknown[]) => void): void => {
      emitter.on?.(event, listener);
      this.watched.push([emitter, event, listener]);
    };
    if (connection.owned) {
      // Only on connections the library made: a listener on the caller's client would silence
      // ioredis's own report of errors nobody else listens to.
      listen(client, 'error', (err) => {
        connection.lastError = err instanceof Error ? err.message : String(err);
      });
      listen(client, 'ready', () => {
        connection.lastError = undefined;
      });
    }
    if (client.isCluster) {
      // A Cluster node that closes never reconnects (unless clusterNodeRetryStrategy says so):
      // ioredis then rejects its own in-flight commands. Failing every call of the Cluster on any
      // node's close would fail calls on healthy nodes too, e.g. on each failed reconnect to a
      // dead primary during a failover.
      const options = client.options as { clusterNodeRetryStrategy?: unknown } | undefined;
      if (typeof options?.clusterNodeRetryStrategy !== 'function') return;
      listen(client, '+node', (node) => listen(node as RedisClient, 'close', onClose));
      for (const node of client.nodes?.() ?? []) listen(node, 'close', onClose);
    } else {
      listen(client, 'close', onClose);
    }
  }

  /**
   * Waits for `replicas` replicas to acknowledge the writes so far of the connection that carried
   * the write to `routingKey`, and returns how many did. On a Cluster that is the connection to
   * the primary serving the key's slot, and any other the write may have taken (`mark`).
   */
  async waitForReplicas(
    what: string, routingKey: string, replicas: number, timeoutMs: number, mark?: WriteMark,
  ): Promise<number> {
    // On a Cluster: every connection the write may have gone over (see writeMark); the fewest
    // acknowledgements count. Usually that is one connection.
    const connections = new Set<RedisClient>();
    try {
      if (this.asking === undefined) {
        connections.add(this.writer);
      } else {
        connections.add(primaryFor(this.writer, routingKey));
        if (mark?.primary !== undefined) connections.add(mark.primary);
        for (const node of this.asking.since(mark?.asked ?? Infinity)) connections.add(node);
      }
      // Through attempt(), for its deadline and its watch: a WAIT in flight when a connection that
      // reconnects closes is dropped by ioredis and would otherwise never settle.
      const budgetMs = timeoutMs + 1000;
      const counts = await Promise.all([...connections].map((connection) =>
        this.attempt(true, 'WAIT', connection, Date.now() + budgetMs, budgetMs,
          (client) => client.call!('WAIT', replicas, timeoutMs))));
      return Math.min(...counts.map(Number));
    } catch (err) {
      throw indeterminate(`${what} committed on the primary, but waiting for replicas failed: ${(err as Error).message}`, err);
    }
  }

  /** Stops using the clients; quits the ones the library created. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [client, event, listener] of this.watched) client.off?.(event, listener);
    await Promise.all(this.owned.map(quit));
  }
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
    throw determinate(`could not connect to ${where}: ${(cause as Error).message}`, cause);
  }
  return client;
}

/** A Redis URL without its credentials, for messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.href.replace(/\/$/, '');
  } catch {
    return '(an unparseable Redis URL)';
  }
}

/**
 * Quits a connection the library made and waits until it has ended (QUIT's reply comes before
 * the socket closes), disconnecting it if it does not end in time.
 */
async function quit(client: RedisClient): Promise<void> {
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

/** How long `close()` waits for a quit connection to end before it disconnects it. */
const QUIT_WAIT_MS = 1000;

/** A connection like `client` for writes only, that never re-sends a command. */
function duplicateForWrites(client: RedisClient): RedisClient {
  if (typeof client.duplicate !== 'function') {
    throw new TypeError('the client re-sends commands after reconnects and cannot be duplicated');
  }
  if (client.isCluster) {
    return client.duplicate([], safeClusterOptions(client.options as ClusterOptions | undefined));
  }
  return client.duplicate(SAFE_WRITE_OPTIONS);
}

/**
 * The connection of `cluster` to the primary that serves the slot of `key`: the very connection
 * that carried the slot's last write. ioredis sends a slot's commands to `slots[slot][0]` (which a
 * MOVED reply updates at once) over the node connections that `nodes()` lists. A write that was
 * redirected with ASK during a slot migration went to the importing node instead; WAIT here does
 * not cover it.
 */
function primaryFor(cluster: RedisClient, key: string): RedisClient {
  const slots = (cluster as unknown as { slots: Array<string[] | undefined> }).slots;
  const address = slots[keySlot(key)]?.[0];
  // 'all', not 'master': after a failover the pool may still list the promoted node as a replica.
  const primary = cluster.nodes?.('all').find((node) => {
    const options = node.options as { host?: string; port?: number } | undefined;
    return `${options?.host}:${options?.port}` === address;
  });
  if (primary === undefined) throw indeterminate(`no known primary serves the slot of ${key}`);
  return primary;
}

/** The Redis Cluster slot of a key name: CRC16 (XMODEM) of its hash tag, modulo 16384. */
export function keySlot(key: string): number {
  const bytes = Buffer.from(key, 'utf8');
  let start = 0;
  let end = bytes.length;
  const open = bytes.indexOf(0x7b);
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) {
      start = open + 1;
      end = close;
    }
  }
  let crc = 0;
  for (let i = start; i < end; i++) {
    crc ^= bytes[i]! << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

function backoff(retry: Required<RetryOptions>, attempt: number): number {
  const ceiling = Math.min(retry.maxDelayMs, retry.minDelayMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
