/**
 * The contract suite on every Redis and Valkey release found in the servers folder (see
 * README, "Supported servers"), each started here on a free loopback port and stopped after its
 * suite, plus what differs between releases: the version it reports, the commands the scripts
 * call, and how a script failing on that release's error format is classified.
 *
 * The folder is `../shared/servers` beside the repository (one sub-folder per release, each with
 * a `redis-server`), or REDIS_SERVERS_DIR. Without it the suites are skipped loudly, unless
 * REQUIRE_SERVERS=1, which makes that a failure.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ExternalError } from '../lib/index.js';
import { SCRIPTS } from '../lib/scripts.js';
import { redisBackend } from './support/backends.js';
import type { Backend, Store } from './support/backends.js';
import { appendVersions, contractSuite } from './support/contract.js';
import { RedisServer } from './support/redis-server.js';
import { snapshot } from './support/snapshot.js';

// build/spec/servers.test.js -> the repository root.
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVERS_DIR = process.env.REDIS_SERVERS_DIR ?? resolve(REPO_ROOT, '../shared/servers');
const REQUIRE_SERVERS = process.env.REQUIRE_SERVERS === '1';

/** A release to test: its folder name says what it is, e.g. `redis-5.0.14`, `valkey-8.0.1`. */
interface Release {
  readonly name: string;
  readonly product: 'redis' | 'valkey';
  readonly version: string;
  readonly binary: string;
}

function releases(): Release[] {
  if (!existsSync(SERVERS_DIR)) {
    if (REQUIRE_SERVERS) throw new Error(`REQUIRE_SERVERS=1 but there is no servers folder at ${SERVERS_DIR}`);
    console.warn(`\n!!! SKIPPING the Redis/Valkey release suites: no servers folder at ${SERVERS_DIR}. ` +
      'Set REDIS_SERVERS_DIR, or REQUIRE_SERVERS=1 to make this a failure. !!!\n');
    return [];
  }
  const found = readdirSync(SERVERS_DIR).flatMap((name): Release[] => {
    const match = /^(redis|valkey)-(\d+\.\d+\.\d+)$/.exec(name);
    const binary = join(SERVERS_DIR, name, 'redis-server');
    if (match === null || !existsSync(binary)) return [];
    return [{ name, product: match[1] as Release['product'], version: match[2]!, binary }];
  });
  if (found.length === 0 && REQUIRE_SERVERS) throw new Error(`REQUIRE_SERVERS=1 but ${SERVERS_DIR} holds no server`);
  return found.sort((a, b) => a.name.localeCompare(b.name));
}

/** The contract suite's backend on a release, started by its first store and stopped by close(). */
function releaseBackend(release: Release): Backend {
  let server: Promise<RedisServer> | undefined;
  let inner: Backend | undefined;
  const ready = async (): Promise<Backend> => {
    server ??= RedisServer.startOnFreePort({ binary: release.binary });
    inner ??= redisBackend((await server).url, release.name);
    return inner;
  };
  return {
    name: release.name,
    store: async (options) => (await ready()).store(options),
    peer: async (store, options) => (await ready()).peer(store, options),
    async close() {
      try {
        await inner?.close();
      } finally {
        await (await server)?.stop();
      }
    },
  };
}

/**
 * Runs `body` on a store on a fresh server of `release` started with `args`, then stops it all.
 * The store does not retry: a failure is seen as it was.
 */
async function onServer(release: Release, args: string[], body: (store: Store, raw: Redis) => Promise<void>): Promise<void> {
  const server = await RedisServer.startOnFreePort({ binary: release.binary, args });
  const backend = redisBackend(server.url, release.name);
  try {
    const store = await backend.store({ retry: { attempts: 1 } });
    try {
      await body(store, store.raw);
    } finally {
      await store.dispose();
    }
  } finally {
    await backend.close();
    await server.stop();
  }
}

/** Every command name the scripts pass to `redis.call`. */
function scriptCommands(): string[] {
  const names = new Set<string>();
  for (const { lua } of Object.values(SCRIPTS)) {
    for (const [, name] of lua.matchAll(/(?:rcall|redis\.call)\('(\w+)'/g)) names.add(name!.toLowerCase());
  }
  return [...names].sort();
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  return assert.unreachable('expected a rejection');
}

for (const release of releases()) {
  const test = suite(`${release.name}: the release itself`);

  test('it reports the version its folder names, and runs every command the scripts call', async () => {
    await onServer(release, [], async (_store, raw) => {
      const info = await raw.info('server');
      const field = release.product === 'valkey' ? 'valkey_version' : 'redis_version';
      const reported = new RegExp(`^${field}:(.+?)\\r?$`, 'm').exec(info)?.[1];
      console.log(`  ${release.name}: ${field} ${reported}`);
      assert.is(reported, release.version);
      const commands = scriptCommands();
      assert.ok(commands.includes('zrangebylex') && commands.includes('hset'), commands.join(' '));
      const docs = await raw.call('COMMAND', 'INFO', ...commands) as unknown[];
      const missing = commands.filter((_name, i) => docs[i] === null);
      assert.equal(missing, [], `${release.name} lacks ${missing.join(', ')}`);
    });
  });

  test('a script failing after its first write is an indeterminate error (and did change something)', async () => {
    await onServer(release, ['--rename-command', 'HDEL', ''], async (store) => {
      await appendVersions(store.consensus, 'k', 3);
      const before = await snapshot(store.raw, store.prefix);
      const err = await rejection(store.consensus.truncate('k', 2n));
      assert.instance(err, ExternalError);
      assert.is((err as ExternalError).determinate, false, (err as Error).message);
      assert.is.not(await snapshot(store.raw, store.prefix), before);
    });
    await onServer(release, ['--rename-command', 'HSET', ''], async (store) => {
      const err = await rejection(store.consensus.compareAndSet('k', null, { seqno: 0n, data: Buffer.from('x') }));
      assert.instance(err, ExternalError);
      assert.is((err as ExternalError).determinate, false, (err as Error).message);
      assert.is.not(await snapshot(store.raw, store.prefix), '');
    });
  });

  test.run();
  contractSuite(releaseBackend(release));
}
