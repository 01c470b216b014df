/**
 * The backends every shared suite runs against. A backend makes fresh, isolated stores and
 * cleans up what they wrote.
 *
 * Real Redis comes from REDIS_URL (default redis://127.0.0.1:6379). When it cannot be reached the
 * real suites are skipped loudly, unless REQUIRE_REDIS=1, which makes that a failure.
 */
import * as assert from 'uvu/assert';
import { Redis } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { ExternalError, RedisConsensus } from '../../lib/index.js';
import type { ExternalErrorCode, RedisConsensusOptions } from '../../lib/index.js';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const REQUIRE_REDIS = process.env.REQUIRE_REDIS === '1';

/** A unique prefix for one store of this test run. */
export function freshPrefix(label = 'spec'): string {
  return `rctest-${label}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/** A store to test, and how to dispose of it. */
export interface Store {
  readonly consensus: RedisConsensus;
  /** A raw client on the same data, for checking what is stored. */
  readonly raw: Redis;
  readonly prefix: string;
  /** Closes the store and deletes everything under its prefix. */
  dispose(): Promise<void>;
}

export interface Backend {
  readonly name: string;
  /** A new empty store under a fresh prefix. */
  store(options?: RedisConsensusOptions): Promise<Store>;
  /** A second handle on the same data as `store` (another worker). */
  peer(store: Store, options?: RedisConsensusOptions): Promise<RedisConsensus>;
  /** Releases what the backend holds open. */
  close(): Promise<void>;
}

let mockPort = 40000;

/** ioredis-mock: every store gets its own data set (a mock port of its own). */
export function mockBackend(): Backend {
  const ports = new WeakMap<Store, number>();
  return {
    name: 'ioredis-mock',
    async store(options = {}) {
      const port = mockPort++;
      const prefix = options.prefix ?? freshPrefix('mock');
      const raw = new RedisMock({ port });
      const consensus = new RedisConsensus(new RedisMock({ port }), { ...options, prefix });
      const store: Store = {
        consensus, raw, prefix,
        async dispose() {
          await consensus.close();
          await raw.flushall();
        },
      };
      ports.set(store, port);
      return store;
    },
    async peer(store, options = {}) {
      return new RedisConsensus(new RedisMock({ port: ports.get(store) }),
        { ...options, prefix: store.prefix });
    },
    async close() {},
  };
}

/** Deletes every key under a prefix, on a server we did not start: never FLUSHALL. */
export async function deletePrefix(raw: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await raw.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    if (keys.length > 0) await raw.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
}

/** Whether a real Redis answers at REDIS_URL; fails the run if it must and does not. */
export async function realRedisAvailable(url = REDIS_URL): Promise<boolean> {
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {});
  try {
    await probe.connect();
    await probe.ping();
    return true;
  } catch (err) {
    if (REQUIRE_REDIS) {
      throw new Error(`REQUIRE_REDIS=1 but no Redis at ${url}: ${(err as Error).message}`);
    }
    console.warn(`\n!!! SKIPPING real-Redis suites: no Redis at ${url} (${(err as Error).message}). ` +
      'Set REDIS_URL, or REQUIRE_REDIS=1 to make this a failure. !!!\n');
    return false;
  } finally {
    probe.disconnect();
  }
}

/** A real Redis at `url`: stores share one server and are isolated by prefix. */
export function redisBackend(url = REDIS_URL, name = 'redis'): Backend {
  const opened: RedisConsensus[] = [];
  return {
    name,
    async store(options = {}) {
      const prefix = options.prefix ?? freshPrefix('redis');
      const consensus = await RedisConsensus.connect(url, { ...options, prefix });
      const raw = new Redis(url);
      return {
        consensus, raw, prefix,
        async dispose() {
          await consensus.close();
          await deletePrefix(raw, prefix);
          await raw.quit();
        },
      };
    },
    async peer(store, options = {}) {
      const peer = await RedisConsensus.connect(url, { ...options, prefix: store.prefix });
      opened.push(peer);
      return peer;
    },
    async close() {
      await Promise.all(opened.splice(0).map((peer) => peer.close()));
    },
  };
}

/** Every backend available in this run: the mock always, a real Redis when one answers. */
export async function backends(): Promise<Backend[]> {
  const list = [mockBackend()];
  if (await realRedisAvailable()) list.push(redisBackend());
  return list;
}

/** What `promise` rejects with, or undefined when it fulfils. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  return undefined;
}

/** Asserts an ExternalError of that kind and code, and returns it. */
export function assertExternal(err: unknown, determinate: boolean, code: ExternalErrorCode): ExternalError {
  assert.instance(err, ExternalError, `expected an ExternalError, got ${String(err)}`);
  const external = err as ExternalError;
  assert.is(external.code, code, external.message);
  assert.is(external.determinate, determinate, external.message);
  return external;
}
