/**
 * A private `redis-server` for tests that must disrupt Redis (kill clients, flush scripts,
 * crash and restart it): never do that to the shared server at 6379.
 *
 * The server listens on loopback only (plus `host` when given: a test bridge or network namespace address, `netns.ts`), on the port you give it (stay in your own port range),
 * keeps its files in a fresh temporary directory, and saves nothing unless you pass arguments
 * that say otherwise (e.g. `['--appendonly', 'yes', '--appendfsync', 'always']`).
 *
 * Every server started here is killed when the process exits, also when a test fails or throws,
 * so a failing run never leaves a server behind. Call `stop()` in your test's cleanup anyway.
 *
 * @example
 * ```ts
 * const server = await RedisServer.start({ port: 7150, args: ['--appendonly', 'yes'] });
 * try {
 *   // ... server.url ...
 *   await server.crash();        // SIGKILL: no shutdown save, like a power cut
 *   await server.start();        // same port, same directory, same arguments
 * } finally {
 *   await server.stop();         // also deletes the directory
 * }
 * ```
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** How to start a server. */
export interface RedisServerOptions {
  /** The port to listen on (127.0.0.1 only). */
  readonly port: number;
  /** More `redis-server` arguments, e.g. `['--appendonly', 'yes']`. */
  readonly args?: readonly string[];
  /**
   * Text of a config file, written into the server's directory and given first (Redis reads a
   * config file only as its first argument; Sentinel needs one it can rewrite).
   */
  readonly config?: string;
  /** How long to wait for the server to answer PING, in ms. Default 10000. */
  readonly startTimeoutMs?: number;
  /** The `redis-server` (or `valkey-server`) to run. Default: `redis-server` from `PATH`. */
  readonly binary?: string;
  /**
   * The address clients reach it at, bound besides 127.0.0.1 (e.g. a network namespace's address,
   * `spec/support/netns.ts`). Default: 127.0.0.1.
   */
  readonly host?: string;
  /** An argv prefix to run the server through, e.g. `['ip', 'netns', 'exec', name]` (it must exec, keeping the pid). */
  readonly launcher?: readonly string[];
}

/** Every child still running, killed on exit whatever happened, and the directories to delete. */
const running = new Set<ChildProcess>();
const directories = new Set<string>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
  for (const dir of directories) rmSync(dir, { recursive: true, force: true });
});

/** Whether `redis-server` can be run here. */
export function redisServerAvailable(): boolean {
  const probe = spawnSync('redis-server', ['--version'], { stdio: 'ignore' });
  return probe.status === 0;
}

/** A `redis-server` process this test run started and owns. */
export class RedisServer {
  /** The directory the server keeps its files in (AOF, RDB). */
  readonly dir: string;
  private child: ChildProcess | undefined;
  private output = '';

  private constructor(private readonly options: RedisServerOptions) {
    this.dir = mkdtempSync(join(tmpdir(), `redis-${options.port}-`));
    directories.add(this.dir);
    if (options.config !== undefined) writeFileSync(join(this.dir, 'redis.conf'), options.config);
  }

  /** Starts a server and waits until it answers PING. */
  static async start(options: RedisServerOptions): Promise<RedisServer> {
    const server = new RedisServer(options);
    try {
      await server.start();
    } catch (err) {
      rmSync(server.dir, { recursive: true, force: true });
      directories.delete(server.dir);
      throw err;
    }
    return server;
  }

  /**
   * Starts a server on a port the system reports free; another process can take that port
   * before the server binds it, so a failed start is tried again on another free port.
   */
  static async startOnFreePort(options: Omit<RedisServerOptions, 'port'> = {}, attempts = 5): Promise<RedisServer> {
    let lastError: unknown;
    for (let i = 0; i < attempts; i++) {
      try {
        return await RedisServer.start({ ...options, port: await freePort() });
      } catch (err) {
        lastError = err;
      }
    }
    throw new Error(`could not start ${options.binary ?? 'redis-server'} on a free port: ${(lastError as Error).message}`);
  }

  /**
   * Starts a server on the first port of `[first, last]` that takes it, starting from an offset
   * drawn from the process id, so that concurrent runs rarely try the same ports.
   */
  static async startInRange(first: number, last: number, options: Omit<RedisServerOptions, 'port'> = {}): Promise<RedisServer> {
    const size = last - first + 1;
    const offset = process.pid % size;
    let lastError: unknown;
    for (let i = 0; i < size; i++) {
      try {
        return await RedisServer.start({ ...options, port: first + (offset + i) % size });
      } catch (err) {
        lastError = err;
      }
    }
    throw new Error(`could not start redis-server on any port of ${first}-${last}: ${(lastError as Error).message}`);
  }

  /** The port it listens on. */
  get port(): number {
    return this.options.port;
  }

  /** The address clients reach it at: 127.0.0.1 unless started with `host`. */
  get host(): string {
    return this.options.host ?? '127.0.0.1';
  }

  /** `redis://<host>:<port>`. */
  get url(): string {
    return `redis://${this.host}:${this.options.port}`;
  }

  /** Whether the process is running. */
  get running(): boolean {
    return this.child !== undefined;
  }

  /**
   * (Re)starts the process with the same port, directory and arguments, and waits until it
   * answers PING (not LOADING). Fails if it is already running.
   */
  async start(): Promise<void> {
    if (this.child !== undefined) throw new Error(`redis-server on ${this.port} is already running`);
    // Another server on the port would answer the PING below for a server that failed to bind.
    if (await answersPing(this.port, 200, this.host)) throw new Error(`port ${this.port} is taken by another server`);
    const args = [
      ...(this.options.config === undefined ? [] : [join(this.dir, 'redis.conf')]),
      '--port', String(this.port), '--bind', ...new Set([this.host, '127.0.0.1']), '--dir', this.dir,
      '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', '',
      // Reached on a test bridge or namespace address (never routed off the host): protected mode would refuse it.
      ...(this.host === '127.0.0.1' ? [] : ['--protected-mode', 'no']),
      ...(this.options.args ?? []),
    ];
    const [program, ...prefix] = [...(this.options.launcher ?? []), this.options.binary ?? 'redis-server'];
    const child = spawn(program!, [...prefix, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.output = '';
    const keep = (chunk: Buffer): void => {
      // The tail of the log is what explains a failed start.
      this.output = (this.output + chunk.toString()).slice(-4000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.child = child;
    running.add(child);
    let exited = false;
    child.once('exit', () => {
      exited = true;
      running.delete(child);
      if (this.child === child) this.child = undefined;
    });
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 10000);
    for (;;) {
      if (exited) {
        throw new Error(`redis-server on port ${this.port} exited at start:\n${this.output}`);
      }
      if (await answersPing(this.port, 1000, this.host)) return;
      if (Date.now() > deadline) {
        await this.crash();
        throw new Error(`redis-server on port ${this.port} did not answer PING in time:\n${this.output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Kills the process with SIGKILL (no save on shutdown) and waits until it is gone. */
  async crash(): Promise<void> {
    await this.signal('SIGKILL');
  }

  /** Stops the process (SIGTERM: a clean shutdown) and waits until it is gone. */
  async shutdown(): Promise<void> {
    await this.signal('SIGTERM');
  }

  /** Freezes the process (SIGSTOP): its connections stay open and nothing answers. */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  /** Lets a frozen process go on (SIGCONT). */
  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** Kills the process and deletes its directory. Safe to call more than once. */
  async stop(): Promise<void> {
    await this.crash();
    rmSync(this.dir, { recursive: true, force: true });
    directories.delete(this.dir);
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await gone;
  }
}

/**
 * Whether a server on `port` answers PING: with PONG, or with NOAUTH (it is up, and requires a
 * password: `--requirepass`); a loading server answers -LOADING.
 */
export function answersPing(port: number, timeoutMs = 1000, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let reply = '';
    const finish = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'));
    });
    socket.on('error', () => finish(false));
    socket.on('close', () => finish(false));
  });
}

/** A loopback port that nothing listens on right now (the system picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address !== null
        ? resolve(address.port)
        : reject(new Error('no port from the system'))));
    });
  });
}
