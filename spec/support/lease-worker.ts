/**
 * A process of lease contenders, for lease-processes.test.ts: `contenders` loops that each acquire
 * the lease on one key (waiting), act as the owner while `lease.held` for a random while, release,
 * and compete again, until the parent sends 'stop'. Every act as the owner is logged with the time
 * the holder checked `held` before it, mapped to the Redis server's clock (TIME, offset measured at
 * start with its error), with `writeSync`, so that a process killed with SIGKILL leaves its record.
 *
 * Log lines: `O <offsetMs> <errorMs>`, `A <contender> <token> <waitedMs>` (acquired),
 * `T <contender> <token> <serverMs>` (acted as owner), `R <contender> <token>` (released),
 * `W <contender> <waitedMs>` (still waiting when stopped),
 * `E <contender> <message>` (an acquire failed and is tried again).
 */
import { openSync, writeSync } from 'node:fs';
import { Redis } from 'ioredis';
import { RedisConsensus } from '../../lib/index.js';
import type { RedisConsensusOptions } from '../../lib/index.js';
import { SAFE_WRITE_OPTIONS } from '../../lib/client.js';

export interface WorkerConfig {
  readonly worker: number;
  readonly contenders: number;
  readonly key: string;
  readonly prefix: string;
  readonly ttlMs: number;
  readonly holdMs: readonly [number, number];
  /** One tenure in twenty is held this long (renewals, and a pause that catches a holder at work). */
  readonly longHoldMs: number;
  readonly log: string;
  /** Where the store is: a URL, a Sentinel, or Cluster nodes. */
  readonly url?: string;
  readonly sentinel?: { readonly port: number; readonly name: string };
  readonly cluster?: ReadonlyArray<{ host: string; port: number }>;
  /** A server to read TIME from (the tests' servers share this machine's clock). */
  readonly timePort: number;
  readonly options?: RedisConsensusOptions;
}

const config = JSON.parse(process.argv[2]!) as WorkerConfig;
const fd = openSync(config.log, 'a');
const log = (line: string): void => {
  writeSync(fd, `${line}\n`);
};
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function open(): Promise<RedisConsensus> {
  const options = { prefix: config.prefix, timeoutMs: 1000, ...config.options };
  if (config.cluster !== undefined) return RedisConsensus.connectCluster([...config.cluster], options);
  if (config.sentinel !== undefined) {
    const client = new Redis({
      sentinels: [{ host: '127.0.0.1', port: config.sentinel.port }], name: config.sentinel.name, ...SAFE_WRITE_OPTIONS,
    });
    client.on('error', () => {});
    return new RedisConsensus(client, options);
  }
  return RedisConsensus.connect(config.url, options);
}

/** The offset from this process's monotonic clock to the server's clock, and its error (half the best round trip). */
async function clockOffset(): Promise<{ offset: number; error: number }> {
  const raw = new Redis({ host: '127.0.0.1', port: config.timePort });
  let best = { offset: 0, error: Infinity };
  for (let i = 0; i < 10; i++) {
    const sent = performance.now();
    const [sec, usec] = await raw.time();
    const received = performance.now();
    const error = (received - sent) / 2;
    if (error < best.error) best = { offset: Number(sec) * 1000 + Number(usec) / 1000 - (sent + received) / 2, error };
  }
  raw.disconnect();
  return best;
}

const stop = new AbortController();
process.on('message', (message) => {
  if (message === 'stop') stop.abort(new Error('stopped'));
});

async function contend(contender: number, store: RedisConsensus, offset: number): Promise<void> {
  const [minHold, maxHold] = config.holdMs;
  while (!stop.signal.aborted) {
    const started = performance.now();
    const long = Math.random() < 0.05;
    let lease;
    try {
      lease = await store.acquireLease(config.key, {
        ttlMs: config.ttlMs, name: `${config.worker}/${contender}/${long ? 'long' : 'short'}`, signal: stop.signal,
      });
    } catch (err) {
      if (stop.signal.aborted) {
        log(`W ${contender} ${(performance.now() - started).toFixed(1)}`);
        break;
      }
      log(`E ${contender} ${(err as Error).message.replace(/\n/g, ' ')}`);
      await sleep(50);
      continue;
    }
    log(`A ${contender} ${lease.token} ${(performance.now() - started).toFixed(1)}`);
    const holdUntil = performance.now() + (long ? config.longHoldMs : minHold + Math.random() * (maxHold - minHold));
    while (!stop.signal.aborted) {
      // The time is taken before `held` is checked: the holder believed it owned the lease then.
      const checked = performance.now();
      if (checked >= holdUntil || !lease.held) break;
      log(`T ${contender} ${lease.token} ${(checked + offset).toFixed(3)}`);
      await sleep(3);
    }
    await lease.release().catch(() => undefined);
    log(`R ${contender} ${lease.token}`);
    await sleep(Math.random() * 10);
  }
}

const { offset, error } = await clockOffset();
log(`O ${offset.toFixed(3)} ${error.toFixed(3)}`);
const store = await open();
process.send?.('ready');
await Promise.all(Array.from({ length: config.contenders }, (_, contender) => contend(contender, store, offset)));
await store.close();
process.exit(0);
