/**
 * An in-process TCP proxy between a client and Redis that injects faults on command, so tests can
 * produce exactly the failures the error model talks about:
 *
 * - `cutAfter(marker)`: the next request whose bytes contain `marker` is forwarded to Redis;
 *   when Redis's reply comes back, the proxy destroys both sockets instead of forwarding it. The
 *   request certainly ran; the client never learns its outcome.
 * - `holdReplyTo(marker)`: the reply to that request (and everything after it on that connection)
 *   is held until `releaseHeld()`: a reply later than any deadline.
 * - `holdRequest(marker)`: the request itself is held before it reaches Redis until
 *   `releaseHeld()`: a request still in transit when the client gives up.
 * - `failWith(marker, error, times)`: answers the next `times` requests containing `marker`
 *   with a Redis error reply (e.g. `LOADING ...`) without forwarding them: refused before running.
 * - `refuse()` / `accept()`: while refusing, new connections are closed as soon as they are
 *   accepted; `dropAll()` destroys the connections there are.
 * - `partition()` / `heal()`: a network partition: while partitioned, nothing goes through in
 *   either direction, on open connections or new ones (held, as TCP would keep retransmitting),
 *   and `heal()` delivers what was held and connects what was waiting.
 *
 * It counts what it saw (`seen(marker)`: how many requests carrying a marker reached Redis), so
 * a test can prove that a request was sent exactly once. Markers (at most 256 bytes) are matched
 * per connection, across chunk boundaries; use something unique to one call, such as its
 * payload. Faults act per connection: a held or cut reply holds or cuts whatever else that
 * connection was carrying, as a real network fault would.
 *
 * @example
 * ```ts
 * const proxy = await FaultProxy.start(7151, { port: server.port });
 * const consensus = await RedisConsensus.connect(proxy.url);
 * proxy.count(payload);
 * const cut = proxy.cutAfter(payload);
 * await consensus.compareAndSet(key, 0, { seqno: 1, data: Buffer.from(payload) }); // rejects
 * await cut;
 * proxy.seen(payload); // 1
 * await proxy.close();
 * ```
 */
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';

/** One client connection and its upstream connection to Redis. */
interface Pipe {
  readonly client: Socket;
  readonly server: Socket;
  /** The tail of the last client chunk, to find markers split across chunks. */
  tail: Buffer;
  /** Set when the next server bytes must not be forwarded: cut or hold. */
  onReply: 'cut' | 'hold' | undefined;
  /** Server bytes held back. */
  heldReplies: Buffer[];
  /** Client bytes held back (holdRequest). */
  heldRequests: Buffer[];
  /** Resolves the promise of the rule that armed `onReply`. */
  fired: (() => void) | undefined;
}

/** A one-shot (or n-shot) fault armed on requests that carry a marker. */
interface Rule {
  readonly marker: Buffer;
  readonly action: 'cut' | 'holdReply' | 'holdRequest' | 'fail';
  readonly reply?: Buffer;
  remaining: number;
  readonly fired: () => void;
}

/** What the proxy has done so far. */
export interface ProxyStats {
  /** Connections accepted and forwarded. */
  accepted: number;
  /** Connections closed at once because the proxy was refusing. */
  refused: number;
  /** Connections cut by `cutAfter` or `dropAll`. */
  cut: number;
  /** Requests answered with an injected error. */
  failed: number;
}

export class FaultProxy {
  /** What the proxy has done so far. */
  readonly stats: ProxyStats = { accepted: 0, refused: 0, cut: 0, failed: 0 };
  private readonly pipes = new Set<Pipe>();
  private rules: Rule[] = [];
  private readonly counted = new Map<string, number>();
  private refusing = false;
  private partitioned = false;
  /** Connections accepted while partitioned, with what they sent: connected upstream on heal. */
  private waiting: Array<{ client: Socket; sent: Buffer[] }> = [];

  private constructor(
    private readonly server: Server,
    /** The port the proxy listens on (127.0.0.1). */
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  /**
   * Starts a proxy on 127.0.0.1:`port` (0: any free port) that forwards to `target`.
   */
  static async start(port: number, target: { host?: string; port: number }): Promise<FaultProxy> {
    let proxy: FaultProxy | undefined;
    const server = createServer((client) => proxy!.onConnection(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    const bound = typeof address === 'object' && address !== null ? address.port : port;
    proxy = new FaultProxy(server, bound, { host: target.host ?? '127.0.0.1', port: target.port });
    return proxy;
  }

  /** `redis://127.0.0.1:<proxy port>`. */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Client connections open now. */
  get connections(): number {
    return this.pipes.size;
  }

  /** How many requests carrying `marker` (registered with `count`) reached Redis. */
  seen(marker: string): number {
    return this.counted.get(marker) ?? 0;
  }

  /** Starts counting requests that carry `marker` and reach Redis. */
  count(marker: string): void {
    if (!this.counted.has(marker)) this.counted.set(marker, 0);
  }

  /**
   * Arms a cut: the next request carrying `marker` reaches Redis; when the reply comes back,
   * both sockets are destroyed and the reply is dropped. Resolves when the cut happened.
   */
  cutAfter(marker: string | Buffer): Promise<void> {
    return this.arm(marker, 'cut');
  }

  /**
   * Arms a hold: the next request carrying `marker` reaches Redis, and its reply, with whatever
   * follows it on that connection, is held until `releaseHeld()`. Resolves when the reply is
   * held.
   */
  holdReplyTo(marker: string | Buffer): Promise<void> {
    return this.arm(marker, 'holdReply');
  }

  /**
   * Holds the next request carrying `marker`, and what follows it on that connection, before it
   * reaches Redis, until `releaseHeld()`. Resolves when it is held.
   */
  holdRequest(marker: string | Buffer): Promise<void> {
    return this.arm(marker, 'holdRequest');
  }

  /**
   * Answers the next `times` requests carrying `marker` with the error reply `error` (e.g.
   * `'LOADING Redis is loading the dataset in memory'`) without forwarding them.
   */
  failWith(marker: string | Buffer, error: string, times = 1): Promise<void> {
    return this.arm(marker, 'fail', times, Buffer.from(`-${error}\r\n`));
  }

  /** Forwards everything held back, in order, and stops holding. */
  releaseHeld(): void {
    if (this.partitioned) return;
    for (const pipe of this.pipes) {
      pipe.onReply = undefined;
      for (const chunk of pipe.heldRequests.splice(0)) pipe.server.write(chunk);
      for (const chunk of pipe.heldReplies.splice(0)) pipe.client.write(chunk);
    }
  }

  /** Disarms every fault, forwards what was held and accepts connections again. */
  reset(): void {
    this.rules = [];
    this.refusing = false;
    this.releaseHeld();
  }

  /** Closes new connections as soon as they are accepted, until `accept()`. */
  refuse(): void {
    this.refusing = true;
  }

  /** Forwards new connections again. */
  accept(): void {
    this.refusing = false;
  }

  /** Holds all traffic, both ways, on open and new connections, until `heal()`. */
  partition(): void {
    this.partitioned = true;
    for (const pipe of this.pipes) pipe.onReply = 'hold';
  }

  /** Ends a partition: what was held is delivered, connections made meanwhile go through. */
  heal(): void {
    this.partitioned = false;
    this.releaseHeld();
    for (const { client, sent } of this.waiting.splice(0)) {
      client.removeAllListeners('data');
      const pipe = this.onConnection(client);
      for (const chunk of sent) if (pipe !== undefined) this.fromClient(pipe, chunk);
    }
  }

  /** Destroys every open connection (the client sees its connection reset). */
  dropAll(): void {
    for (const pipe of [...this.pipes]) this.cut(pipe);
  }

  /** Drops every connection and stops listening. */
  async close(): Promise<void> {
    this.refusing = true;
    this.dropAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(client: Socket): Pipe | undefined {
    if (this.refusing) {
      this.stats.refused++;
      client.destroy();
      return undefined;
    }
    if (this.partitioned) {
      const waiting = { client, sent: [] as Buffer[] };
      this.waiting.push(waiting);
      client.on('data', (chunk: Buffer) => waiting.sent.push(chunk));
      client.on('error', () => client.destroy());
      return undefined;
    }
    this.stats.accepted++;
    const server = connect(this.target);
    const pipe: Pipe = {
      client, server, tail: Buffer.alloc(0), onReply: undefined, heldReplies: [], heldRequests: [],
      fired: undefined,
    };
    this.pipes.add(pipe);
    const close = (): void => {
      this.pipes.delete(pipe);
      client.destroy();
      server.destroy();
    };
    client.on('error', close);
    server.on('error', close);
    client.on('close', close);
    server.on('close', close);
    client.on('data', (chunk: Buffer) => this.fromClient(pipe, chunk));
    server.on('data', (chunk: Buffer) => this.fromServer(pipe, chunk));
    return pipe;
  }

  private arm(marker: string | Buffer, action: Rule['action'], times = 1, reply?: Buffer): Promise<void> {
    return new Promise<void>((resolve) => {
      this.rules.push({
        marker: Buffer.isBuffer(marker) ? marker : Buffer.from(marker), action, reply, remaining: times,
        fired: resolve,
      });
    });
  }

  private fromClient(pipe: Pipe, chunk: Buffer): void {
    if (pipe.heldRequests.length > 0 || this.partitioned) {
      pipe.heldRequests.push(chunk);
      return;
    }
    const window = Buffer.concat([pipe.tail, chunk]);
    const searched = pipe.tail.length;
    // Only occurrences that end in this chunk count: the tail was searched with the last one.
    const has = (marker: Buffer): boolean =>
      window.indexOf(marker, Math.max(0, searched - marker.length + 1)) !== -1;
    pipe.tail = window.subarray(Math.max(0, window.length - 256));
    for (const [marker, n] of this.counted) {
      if (has(Buffer.from(marker))) this.counted.set(marker, n + 1);
    }
    const rule = this.rules.find((candidate) => has(candidate.marker));
    if (rule !== undefined) {
      rule.remaining--;
      if (rule.remaining <= 0) this.rules = this.rules.filter((other) => other !== rule);
      switch (rule.action) {
        case 'fail':
          this.stats.failed++;
          pipe.client.write(rule.reply!);
          if (rule.remaining <= 0) rule.fired();
          return;
        case 'holdRequest':
          pipe.heldRequests.push(chunk);
          rule.fired();
          return;
        case 'cut':
          pipe.onReply = 'cut';
          pipe.fired = rule.fired;
          break;
        case 'holdReply':
          pipe.onReply = 'hold';
          pipe.fired = rule.fired;
          break;
      }
    }
    pipe.server.write(chunk);
  }

  private fromServer(pipe: Pipe, chunk: Buffer): void {
    if (pipe.onReply === 'cut') {
      this.cut(pipe);
      pipe.fired?.();
      return;
    }
    if (pipe.onReply === 'hold') {
      pipe.heldReplies.push(chunk);
      pipe.fired?.();
      pipe.fired = undefined;
      return;
    }
    pipe.client.write(chunk);
  }

  private cut(pipe: Pipe): void {
    this.stats.cut++;
    this.pipes.delete(pipe);
    // resetAndDestroy sends RST: the client sees the connection die, as on a network failure.
    pipe.client.resetAndDestroy();
    pipe.server.destroy();
  }
}
