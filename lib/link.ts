/**
 * The link to Redis: which connection carries reads and which carries writes, deadlines, bounded
 * retries of failures known not to have run, and failing calls whose connection broke under them.
 *
 * Every write goes over a connection that never re-sends a command (see `client.ts`), waits for the
 * connection to be ready instead of sitting in an offline queue, and is failed here, as
 * indeterminate, when its connection closes or its deadline passes: with re-sending off, ioredis
 * drops such a command without ever settling its promise.
 */
import { ArraySet } from './array-set.js';
import type { Indexed } from './array-set.js';
import { acquireWriter, isConnection, quit, releaseWriter, resendsNothing } from './client.js';
import type { RedisClient } from './client.js';
import { watchNodeCloses } from './cluster.js';
import { coalesceWrites } from './coalesce.js';
import { Deadlines } from './deadlines.js';
import { debug } from './debug.js';
import { determinate, ExternalError, indeterminate, retryable, toExternal } from './errors.js';
import type { RetryOptions } from './types.js';

/**
 * One call, from `run` until it settles, carried through every attempt. It is also the entry of
 * its connection's calls in flight while an attempt is out (no allocation per attempt for that).
 */
interface Call<T> {
  readonly isWrite: boolean;
  /** The operation, for messages. */
  readonly what: string;
  readonly client: RedisClient;
  /** When the call must have settled (a `Date.now()` time). */
  readonly deadline: number;
  readonly timeoutMs: number;
  readonly send: (client: RedisClient) => Promise<T>;
  /** Attempts sent or tried so far. */
  attempts: number;
  /** The caller's AbortSignal, if any. */
  readonly signal: AbortSignal | undefined;
}

/**
 * An attempt in flight on a connection. Made inside the attempt's promise executor, not kept on
 * the Call: measured with a stub client, a Call that held its attempt's closures made V8 pretenure
 * Calls into the old generation in some runs (~6 us/call instead of ~0.6, most of it in GC).
 */
interface InFlight extends Indexed {
  readonly call: Call<unknown>;
  readonly fail: (err: ExternalError) => void;
}

/** What the Link knows of one connection (or one Cluster client). */
interface Connection {
  /** Calls sent on it and not settled yet. */
  readonly inFlight: ArraySet<InFlight>;
  /** Whether the library made it (and so may cork its socket). */
  readonly owned: boolean;
  /** The last connection error seen (owned connections only), for messages. */
  lastError: string | undefined;
  /** Settles when the connection next becomes ready or ends; set while calls wait for that. */
  change?: Promise<void> | undefined;
}

export class Link {
  /** Carries reads. */
  readonly reader: RedisClient;
  /** Carries writes: never re-sends a command after a reconnect. */
  readonly writer: RedisClient;
  private readonly owned = new Set<RedisClient>();
  private readonly connections = new Map<RedisClient, Connection>();
  /** Removes each listener this Link added. */
  private readonly watched: Array<() => void> = [];
  /** Whether `writer` is the write connection shared by the stores wrapping `reader`. */
  private readonly sharesWriter: boolean;
  private closed = false;
  /** Resolves when `close()` starts: calls waiting for a connection stop waiting. */
  private readonly closing: Promise<void>;
  private markClosing!: () => void;
  /** One timer for the deadlines of every call in flight (see deadlines.ts). */
  private readonly deadlines = new Deadlines();

  /**
   * @param client  the client to use.
   * @param owns    whether the library created `client` (and so closes it).
   */
  constructor(client: RedisClient, owns: boolean, private readonly retry: Required<RetryOptions>) {
    this.closing = new Promise<void>((resolve) => {
      this.markClosing = resolve;
    });
    this.reader = client;
    if (owns) this.owned.add(client);
    // A client we were given that re-sends after reconnects: writes get a connection of their own.
    this.sharesWriter = !resendsNothing(client);
    this.writer = this.sharesWriter ? acquireWriter(client) : client;
    this.watch(this.writer);
    if (this.reader !== this.writer) this.watch(this.reader);
  }

  /**
   * Runs one operation against Redis within `timeoutMs`, retrying failures known not to have
   * run, and maps every failure to an ExternalError (which says how many attempts were made).
   */
  run<T>(
    isWrite: boolean, what: string, timeoutMs: number, send: (client: RedisClient) => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    const call = this.call(isWrite ? this.writer : this.reader, isWrite, what, timeoutMs, send, signal);
    if (signal?.aborted === true) return Promise.reject(abortedBeforeSending(call));
    // The first attempt, which nearly always succeeds, without an async frame around it.
    return this.attempt(call).catch((err: unknown) => this.retryAfter(call, err));
  }

  /**
   * One attempt of a command that counts as a write, on a given connection (a Cluster node), with
   * a deadline and failed if the connection closes: for WAIT, which must not be re-sent.
   */
  runOnce<T>(client: RedisClient, what: string, timeoutMs: number, send: (client: RedisClient) => Promise<T>): Promise<T> {
    return this.attempt(this.call(client, true, what, timeoutMs, send));
  }

  private call<T>(
    client: RedisClient, isWrite: boolean, what: string, timeoutMs: number, send: (client: RedisClient) => Promise<T>,
    signal?: AbortSignal,
  ): Call<T> {
    return {
      isWrite, what, client, deadline: Date.now() + timeoutMs, timeoutMs, send,
      attempts: 0, signal,
    };
  }

  /** Retries after a failed first attempt, while it failed determinately and time is left. */
  private async retryAfter<T>(call: Call<T>, err: unknown): Promise<T> {
    for (;;) {
      const failure = toExternal(err, call.isWrite, call.what, call.attempts);
      const delay = backoff(this.retry, call.attempts);
      if (!retryable(failure) || this.closed) throw failure;
      if (call.attempts >= this.retry.attempts || Date.now() + delay >= call.deadline) {
        if (call.attempts <= 1) throw failure;
        // Same kind, code and cause, and the caller learns that retrying did not help either.
        throw new ExternalError(true, `${failure.message.replace(/^determinate: /, '')} ` +
          `(gave up after ${call.attempts} attempts in ${call.timeoutMs - (call.deadline - Date.now())} ms)`,
        { cause: failure.cause, attempts: call.attempts, code: failure.code });
      }
      debug('retry %s: attempt %d failed (%s), next in %d ms: %s', call.what, call.attempts, failure.code, delay,
        failure.message);
      await sleep(delay, call.signal);
      if (call.signal?.aborted === true) throw abortedBeforeSending(call);
      try {
        return await this.attempt(call);
      } catch (next) {
        err = next;
      }
    }
  }

  /**
   * Sends the call once its connection is ready, tracked as in flight until it settles, its
   * connection closes or its deadline passes. Not async: on a ready connection (nearly always) a
   * call costs no extra promise or turn.
   */
  private attempt<T>(call: Call<T>): Promise<T> {
    call.attempts++;
    const { client } = call;
    if (this.closed) return this.send(call);
    // Reads wait too: a read parked in an offline queue would only answer after its deadline.
    if (client.status !== undefined && client.status !== 'ready') {
      return this.ready(client, call.what, call.deadline, call.signal).then(() => this.send(call));
    }
    return this.send(call);
  }

  /** Sends the call now, on a connection that is ready (or has no status: ioredis-mock). */
  private send<T>(call: Call<T>): Promise<T> {
    const { client, isWrite, what } = call;
    if (this.closed) return Promise.reject(determinate('closed', `${what}: this RedisConsensus is closed`, undefined, call.attempts));
    if (call.signal?.aborted === true) return Promise.reject(abortedBeforeSending(call));
    const connection = this.connection(client);
    const inFlight = connection.inFlight;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      let onAbort: (() => void) | undefined;
      const settle = (finish: () => void): void => {
        if (settled) return;
        settled = true;
        this.deadlines.delete(expiry);
        inFlight.delete(entry);
        if (onAbort !== undefined) call.signal!.removeEventListener('abort', onAbort);
        finish();
      };
      const entry: InFlight = { call, fail: (err) => settle(() => reject(err)), index: -1 };
      // Only with a signal: the hot path without one adds nothing.
      if (call.signal !== undefined) {
        onAbort = () => entry.fail(isWrite
          ? indeterminate('aborted', `${what}: aborted after the write was sent; it may or may not have been ` +
            'applied, re-read to learn which', call.signal!.reason, call.attempts)
          : determinate('aborted', `${what}: aborted`, call.signal!.reason, call.attempts));
        call.signal.addEventListener('abort', onAbort, { once: true });
      }
      const expiry = this.deadlines.add(call.deadline, () => {
        entry.fail(isWrite
          ? indeterminate('timeout', `${what}: no reply within ${call.timeoutMs} ms; the write may or may not ` +
            'have been applied, re-read to learn which', undefined, call.attempts)
          : determinate('timeout', `${what}: no reply within ${call.timeoutMs} ms`, undefined, call.attempts));
      });
      inFlight.add(entry);
      let sent: Promise<T>;
      // Sockets the library owns send a burst of calls in one write; others' are left alone.
      if (connection.owned) coalesceWrites(client);
      try {
        sent = call.send(client);
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
  private async ready(client: RedisClient, what: string, deadline: number, signal: AbortSignal | undefined): Promise<void> {
    if (!isConnection(client) || client.status === 'ready') return;
    const connection = this.connection(client);
    const notConnected = (): ExternalError => {
      const cause = connection.lastError;
      return determinate('unavailable', `${what}: not connected to Redis (connection ${client.status}` +
        `${cause === undefined ? '' : `, last error: ${cause}`}); nothing was sent`);
    };
    if (client.status === 'end') throw notConnected();
    // A client made with lazyConnect connects on its first command; nothing is sent until ready.
    if (client.status === 'wait') client.connect?.().catch(() => undefined);
    // One pair of listeners per connection, however many calls wait for it (a burst of calls
    // on a connection that is not ready would otherwise exceed the emitter's listener limit).
    connection.change ??= new Promise<void>((resolve) => {
      const unsubscribe = [subscribe(client, 'ready', onChange), subscribe(client, 'end', onChange)];
      function onChange(): void {
        for (const stop of unsubscribe) stop();
        connection.change = undefined;
        resolve();
      }
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onAbort: (() => void) | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
      onAbort = resolve;
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    await Promise.race([connection.change, timedOut, this.closing]);
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort!);
    if (signal?.aborted === true) {
      throw determinate('aborted', `${what}: aborted while waiting for a connection; nothing was sent`, signal.reason);
    }
    if (this.closed) throw determinate('closed', `${what}: this RedisConsensus was closed while the call waited for a connection; nothing was sent`);
    if (client.status !== 'ready') throw notConnected();
  }

  private connection(client: RedisClient): Connection {
    let connection = this.connections.get(client);
    if (connection === undefined) {
      const owned = this.owned.has(client) || (this.sharesWriter && client === this.writer);
      connection = { inFlight: new ArraySet(), owned, lastError: undefined };
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
      debug('a connection closed%s; %d calls in flight on it fail', cause, connection.inFlight.size);
      // ArraySet iterates over a copy: failing a call removes it.
      for (const { call, fail } of connection.inFlight) {
        fail(call.isWrite
          ? indeterminate('connection-lost', `the connection closed${cause} while the write was in flight; it may or ` +
            'may not have been applied, re-read to learn which', undefined, call.attempts)
          : determinate('connection-lost', `the connection closed${cause} while the read was in flight`, undefined, call.attempts));
      }
    };
    const listen = (emitter: RedisClient, event: string, listener: (...args: unknown[]) => void): void => {
      this.watched.push(subscribe(emitter, event, listener));
    };
    if (connection.owned) {
      // Only on connections the library made: a listener on the caller's client would silence
      // ioredis's own report of errors nobody else listens to.
      listen(client, 'error', (err: unknown) => {
        connection.lastError = err instanceof Error ? err.message : String(err);
      });
      listen(client, 'ready', () => {
        debug('a connection is ready');
        connection.lastError = undefined;
      });
    }
    if (client.isCluster) watchNodeCloses(client, onClose, listen);
    else listen(client, 'close', onClose);
  }

  /**
   * Stops using the clients; quits the ones the library created, each within QUIT_WAIT_MS (then
   * disconnected). Calls waiting for a connection fail at once (determinate: nothing was sent);
   * calls still in flight once the connections are quit get no reply any more and fail too,
   * writes indeterminate.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.markClosing();
    for (const unsubscribe of this.watched.splice(0)) unsubscribe();
    await Promise.all([
      ...[...this.owned].map(quit),
      ...(this.sharesWriter ? [releaseWriter(this.reader, this.writer)] : []),
    ]);
    for (const connection of this.connections.values()) {
      for (const { call, fail } of connection.inFlight) {
        fail(call.isWrite
          ? indeterminate('closed', `${call.what}: this RedisConsensus was closed while the write was in flight; ` +
            'it may or may not have been applied, re-read to learn which', undefined, call.attempts)
          : determinate('closed', `${call.what}: this RedisConsensus was closed while the read was in flight`,
            undefined, call.attempts));
      }
    }
  }
}

type Listener = (...args: unknown[]) => void;

/**
 * Listeners of every Link, by emitter and event: each emitter gets one listener per event, which
 * calls theirs. Many stores on one client (or on one shared write connection) would otherwise add
 * a listener each and trip Node's MaxListenersExceededWarning at 11.
 */
const hubs = new WeakMap<RedisClient, Map<string, { listeners: Set<Listener>; fanOut: Listener }>>();

/** Adds `listener` to `event` of `emitter` through its hub; returns what removes it. */
function subscribe(emitter: RedisClient, event: string, listener: Listener): () => void {
  let events = hubs.get(emitter);
  if (events === undefined) hubs.set(emitter, events = new Map());
  let hub = events.get(event);
  if (hub === undefined) {
    const listeners = new Set<Listener>();
    const fanOut: Listener = (...args) => {
      for (const each of [...listeners]) each(...args);
    };
    hub = { listeners, fanOut };
    events.set(event, hub);
    emitter.on?.(event, fanOut);
  }
  // A wrapper per subscription: the same function may be subscribed twice.
  const entry: Listener = (...args) => listener(...args);
  hub.listeners.add(entry);
  const current = hub;
  const byEvent = events;
  return () => {
    current.listeners.delete(entry);
    if (current.listeners.size === 0 && byEvent.get(event) === current) {
      byEvent.delete(event);
      emitter.off?.(event, current.fanOut);
    }
  };
}

function backoff(retry: Required<RetryOptions>, attempt: number): number {
  const ceiling = Math.min(retry.maxDelayMs, retry.minDelayMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/** Waits `ms`, or less when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** The caller aborted before (another attempt of) the call was sent: it had no effect. */
function abortedBeforeSending(call: Call<unknown>): ExternalError {
  return determinate('aborted', `${call.what}: aborted before it was sent`, call.signal?.reason, call.attempts);
}
