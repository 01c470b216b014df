/**
 * ACL users (issue #11, deployment docs): the exact permissions a store needs, measured on
 * servers this spec starts (never on the shared 6379). For each release it creates a user with
 * exactly the ACL docs/deployment.md gives, runs every operation as that user, and reads
 * `ACL LOG` to see that the server refused nothing; then it takes each permission away in turn
 * and sees the server refuse something, so the list has nothing it does not need. A user with
 * read access only (`%R~`) reads through EVALSHA_RO / EVAL_RO (Redis >= 7.0, Valkey).
 *
 * Releases: the `redis-server` on PATH (Redis 7.0 on the CI machine), and the releases of
 * `../shared/servers` (or REDIS_SERVERS_DIR) that have ACLs (>= 6.2). Without a redis-server the
 * suites are skipped loudly, unless REQUIRE_REDIS=1 or REQUIRE_SERVERS=1. Ports 7560-7569.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cluster, Redis } from 'ioredis';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSResult, ExternalError, RedisConsensus, SCAN_ALL } from '../lib/index.js';
import type { RedisConsensusOptions } from '../lib/index.js';
import { keySlot } from '../lib/cluster.js';
import { STEP_LIMITS } from '../lib/history.js';
import { keyNames } from '../lib/layout.js';
import { SCRIPTS } from '../lib/scripts.js';
import { encodeSeqNo } from '../lib/seqno.js';
import { assertExternal, rejection, REQUIRE_REDIS } from './support/backends.js';
import { command, finishMove, infoFields, migrateKeys, slotOwners, until } from './support/cluster.js';
import type { ClusterNode } from './support/cluster.js';
import { RedisServer } from './support/redis-server.js';
import { snapshot } from './support/snapshot.js';
import { captureWarnings, muteConsoleWarnings } from './support/warnings.js';

/** ioredis says this on every connection of a user denied INFO, which several tests make on purpose. */
const READY_CHECK_NOTICE = /^Skipping the ready check because INFO command fails: "NOPERM/;
const muteReadyCheckNotices = (): { restore(): void } =>
  muteConsoleWarnings(READY_CHECK_NOTICE, "ioredis 'Skipping the ready check' for users denied INFO");

/** The prefix the ACL lines are written for (docs/deployment.md uses the same). */
const PREFIX = 'myapp';

/**
 * The key and channel patterns are `myapp:{*`, not `myapp:*`: every name of a store is
 * `<prefix>:{<bucket>}:...`, and `~myapp:*` would also open every store whose prefix starts with
 * `myapp:` (`myapp:sub`), whose names go on with a letter, not a brace.
 *
 * What a store's user needs on Redis 7.0, pasted into docs/deployment.md: its keys and its
 * heads channels, the script commands (EVAL on a connection's first call of a script, EVALSHA
 * after; the _RO pair for reads), SSCAN (listKeys), PING, INFO (the connect check), WAIT
 * (durability), PUBLISH (inside compareAndSet), SUBSCRIBE / UNSUBSCRIBE (watch), and every
 * command the scripts call (Redis checks those against the ACL too).
 */
export const STORE_ACL = 'resetkeys ~myapp:{* resetchannels &myapp:{* -@all +eval +evalsha +evalsha_ro +eval_ro ' +
  '+sscan +ping +info +wait +publish +subscribe +unsubscribe ' +
  '+get +hdel +hget +hgetall +hmget +hset +hstrlen +sadd +set +time +unlink +zadd +zcard +zrange +zrangebylex +zrank +zrem +zremrangebyrank +zscore';

/**
 * On a Redis Cluster (7.0): sharded pub/sub instead of PUBLISH / SUBSCRIBE / UNSUBSCRIBE, and what
 * ioredis's Cluster sends: CLUSTER SLOTS (its slot map, and the watches'), CLUSTER INFO (its
 * ready check), ASKING (redirects while a slot migrates), CLIENT SETNAME (it names the
 * connection that reads the slot map; a refusal is ignored, and logged).
 */
export const CLUSTER_ACL = 'resetkeys ~myapp:{* resetchannels &myapp:{* -@all +eval +evalsha +evalsha_ro +eval_ro ' +
  '+sscan +ping +info +wait +spublish +ssubscribe +sunsubscribe +cluster|slots +cluster|info +asking +client|setname ' +
  '+get +hdel +hget +hgetall +hmget +hset +hstrlen +sadd +set +time +unlink +zadd +zcard +zrange +zrangebylex +zrank +zrem +zremrangebyrank +zscore';

/** A user that can only read (Redis >= 7.0): head, scan, listKeys, watch, readLease (TIME, HGETALL), ping. */
export const READER_ACL = 'resetkeys %R~myapp:{* resetchannels &myapp:{* -@all +evalsha_ro +eval_ro ' +
  '+sscan +ping +info +subscribe +unsubscribe +get +hget +hgetall +hmget +time +zrange +zrangebylex +hstrlen +zscore';

/** Permissions that are not commands or patterns, kept when one permission is taken away. */
const RESETS = new Set(['resetkeys', 'resetchannels', '-@all']);

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVERS_DIR = process.env.REDIS_SERVERS_DIR ?? resolve(REPO_ROOT, '../shared/servers');
const REQUIRE_SERVERS = process.env.REQUIRE_SERVERS === '1';

/** A server release to test, and what its ACLs can say. */
interface Release {
  readonly name: string;
  /** The redis-server binary; `redis-server` from PATH when undefined. */
  readonly binary: string | undefined;
  readonly product: 'redis' | 'valkey';
  readonly version: [number, number];
}

/** EVAL_RO, EVALSHA_RO and `%R~` selectors: Redis 7.0 and Valkey. */
const hasReadOnly = (release: Release): boolean => release.version[0] >= 7;
/**
 * Whether the ACL checks the CLIENT SETINFO that ioredis sends on every connection (and ignores
 * the refusal of): Redis 6.2 checks CLIENT before it finds no such subcommand, Redis 7.2 and
 * Valkey have it. Redis 7.0 answers "unknown subcommand" first, and refuses `+client|setinfo`.
 */
const hasSetInfo = (release: Release): boolean =>
  release.product === 'valkey' || release.version[0] !== 7 || release.version[1] >= 2;

/** The store's ACL on a release: STORE_ACL as docs/deployment.md adapts it. */
function storeAcl(release: Release): string {
  const acl = hasReadOnly(release) ? STORE_ACL : STORE_ACL.replace(' +evalsha_ro +eval_ro', '');
  return hasSetInfo(release) ? `${acl} +client|setinfo` : acl;
}

function readerAcl(release: Release): string {
  return hasSetInfo(release) ? `${READER_ACL} +client|setinfo` : READER_ACL;
}

function versionOf(binary: string): [number, number] | undefined {
  const probe = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  const match = /v=(\d+)\.(\d+)/.exec(probe.stdout ?? '');
  return match === null ? undefined : [Number(match[1]), Number(match[2])];
}

function releases(): Release[] {
  const found: Release[] = [];
  const onPath = versionOf('redis-server');
  if (onPath === undefined) {
    if (REQUIRE_REDIS || REQUIRE_SERVERS) throw new Error('REQUIRE_REDIS=1 but there is no redis-server on PATH');
    console.warn('\n!!! SKIPPING the ACL suites: no redis-server on PATH. Set REQUIRE_REDIS=1 to make this a failure. !!!\n');
  } else {
    found.push({ name: `redis-server on PATH (${onPath.join('.')})`, binary: undefined, product: 'redis', version: onPath });
  }
  if (!existsSync(SERVERS_DIR)) {
    if (REQUIRE_SERVERS) throw new Error(`REQUIRE_SERVERS=1 but there is no servers folder at ${SERVERS_DIR}`);
    console.warn(`\n!!! SKIPPING the ACL suites of other releases: no servers folder at ${SERVERS_DIR}. !!!\n`);
    return found;
  }
  for (const name of readdirSync(SERVERS_DIR).sort()) {
    const match = /^(redis|valkey)-(\d+)\.(\d+)\.\d+$/.exec(name);
    const binary = join(SERVERS_DIR, name, 'redis-server');
    if (match === null || !existsSync(binary)) continue;
    const version: [number, number] = [Number(match[2]), Number(match[3])];
    // ACL users are Redis 6.0+; channel permissions (`&`) 6.2+.
    if (version[0] < 6 || (version[0] === 6 && version[1] < 2)) continue;
    found.push({ name, binary, product: match[1] as Release['product'], version });
  }
  return found;
}

/** One entry of ACL LOG. */
interface Refusal {
  readonly reason: string;
  readonly context: string;
  readonly object: string;
  readonly username: string;
}

/**
 * Where the exercises run: one server, or a Cluster's primaries (each with its own users and
 * ACL LOG).
 */
interface Deployment {
  /** A client with every permission (the default user), on the whole data set. */
  readonly admin: Redis | Cluster;
  /** A connection to each server, with every permission. */
  readonly servers: readonly Redis[];
  /** A store of `user`'s (password `pw`). */
  connect(user: string, options: RedisConsensusOptions): Promise<RedisConsensus>;
}

/** The refusals ACL LOG holds for `username`, on every server. */
async function refusals(deployment: Deployment, username: string): Promise<Refusal[]> {
  const logs = await Promise.all(deployment.servers.map((server) => server.call('ACL', 'LOG', '1000') as Promise<string[][]>));
  return logs.flat().map((entry) => {
    const fields: Record<string, string> = {};
    for (let i = 0; i < entry.length; i += 2) fields[String(entry[i])] = String(entry[i + 1]);
    return fields as unknown as Refusal;
  }).filter((refusal) => refusal.username === username);
}

const describeRefusals = (list: Refusal[]): string =>
  list.map((r) => `${r.reason} ${r.object} (${r.context})`).join(', ') || 'none';

let users = 0;

/** A fresh user with `acl` (and password `pw`) on every server; its name. */
async function createUser(deployment: Deployment, acl: string): Promise<string> {
  const name = `user-${process.pid}-${++users}`;
  await Promise.all(deployment.servers.map((server) => server.call('ACL', 'SETUSER', name, 'reset', 'on', '>pw', ...acl.split(' '))));
  return name;
}

const urlOf = (server: RedisServer, user: string): string => `redis://${user}:pw@127.0.0.1:${server.port}`;

/** Empties every server: data, script caches, command statistics. */
async function reset(deployment: Deployment): Promise<void> {
  await Promise.all(deployment.servers.map(async (server) => {
    await server.flushall();
    await server.script('FLUSH');
    await server.call('CONFIG', 'RESETSTAT');
  }));
}

/** Store options for the exercises: short deadlines, and watches that only pub/sub can wake in time. */
const OPTIONS: RedisConsensusOptions = {
  prefix: PREFIX, timeoutMs: 1000, durability: { replicas: 0, timeoutMs: 100 },
  watch: { pollIntervalMs: 60_000 }, append: { timeoutMs: 1000 },
};

/** Scan steps of 500 versions: scanning LONG_KEY takes three, and later steps call what only they call. */
STEP_LIMITS.scanVersions = 500;

/** A history long enough that `truncate` takes its copy-and-UNLINK path (1,000+ versions, few kept). */
const LONG_KEY = 'long';
const LONG_VERSIONS = 1200;

/** Writes LONG_KEY's history straight into Redis, as the scripts lay it out (one slot). */
async function seedLongHistory(admin: Redis | Cluster): Promise<void> {
  const names = keyNames(PREFIX, LONG_KEY);
  const pipeline = admin.pipeline();
  for (let seqno = 0n; seqno < BigInt(LONG_VERSIONS); seqno++) {
    pipeline.zadd(names.versions, 0, encodeSeqNo(seqno));
    pipeline.hset(names.data, encodeSeqNo(seqno), `v${seqno}`);
  }
  pipeline.sadd(names.registry, names.member);
  await pipeline.exec();
}

/**
 * Runs every operation once as `user`, with scripts flushed first (so each goes through EVAL, or
 * EVAL_RO, then EVALSHA): what each did, `ok` or the error. Every step is bounded in time.
 */
async function exercise(deployment: Deployment, user: string): Promise<Record<string, unknown>> {
  await reset(deployment);
  await seedLongHistory(deployment.admin);
  const outcome: Record<string, unknown> = {};
  const step = async (name: string, body: () => Promise<unknown>): Promise<void> => {
    try {
      const result = await body();
      outcome[name] = result === undefined ? 'ok' : result;
    } catch (err) {
      outcome[name] = err;
    }
  };
  let consensus: RedisConsensus | undefined;
  await step('connect', async () => {
    consensus = await deployment.connect(user, OPTIONS);
  });
  if (consensus === undefined) return outcome;
  const store = consensus;
  const v = (seqno: bigint): { seqno: bigint; data: Buffer } => ({ seqno, data: Buffer.from(`v${seqno}`) });
  await step('ping', () => store.ping().then(() => undefined));
  await step('check', () => store.check());
  await step('compareAndSet', () => store.compareAndSet('k', null, v(0n)));
  await step('compareAndSet mismatch', () => store.compareAndSet('k', null, v(1n)));
  await step('compareAndSetWithHead mismatch', async () => (await store.compareAndSetWithHead('k', 5n, v(6n))).head?.seqno);
  await step('append', async () => (await store.append('k', () => Buffer.from('appended'))).head?.seqno);
  await step('head', async () => (await store.head('k'))?.seqno);
  await step('scan', async () => (await store.scan('k', 0n, SCAN_ALL)).length);
  await step('scan (long history)', async () => (await store.scan(LONG_KEY, 0n, SCAN_ALL)).length);
  await step('listKeys', async () => {
    const keys: string[] = [];
    for await (const key of store.listKeys()) keys.push(key);
    return keys.sort().join(',');
  });
  await step('truncate', () => store.truncate('k', 1n));
  await step('truncate (long history)', () => store.truncate(LONG_KEY, BigInt(LONG_VERSIONS - 50)));
  await step('watch', () => watchOneCommit(store, 'w'));
  await step('lease', () => holdLease(store));
  await step('readLease', async () => {
    const state = await store.readLease('lease');
    return `${state?.record?.token} ${state?.record?.state} ${state?.held ? 'held' : 'not held'}`;
  });
  await step('close', () => store.close());
  return outcome;
}

/**
 * Watches key `key` while committing seqnos 0 then 1 to it, and stops (`break`, which
 * unsubscribes) at the head it sees for seqno 1: the seqnos seen. Watches poll only once a
 * minute here, so within the 2 s bound only the pub/sub announcement can bring seqno 1.
 */
async function watchOneCommit(store: RedisConsensus, key: string): Promise<string> {
  const seen: bigint[] = [];
  const committed = await store.compareAndSet(key, null, { seqno: 0n, data: Buffer.from('w0') });
  if (committed !== CaSResult.Committed) throw new Error(`seqno 0 of ${key}: ${committed}`);
  for await (const head of store.watch(key, { signal: AbortSignal.timeout(2000) })) {
    seen.push(head.seqno);
    if (head.seqno === 0n) {
      // Once the watch is subscribed (it reads the head only then).
      await store.compareAndSet(key, 0n, { seqno: 1n, data: Buffer.from('w1') });
    } else {
      break;
    }
  }
  if (seen.at(-1) !== 1n) throw new Error(`the watch saw ${seen.join(', ') || 'nothing'}, not seqno 1`);
  return seen.join(',');
}

/**
 * Acquires a lease (TIME, HGETALL of its wait queue), holds it through renewals (the second deletes
 * the first: ZREM) and releases it: its token, or why not.
 */
async function holdLease(store: RedisConsensus): Promise<string> {
  const lease = await store.acquireLease('lease', { ttlMs: 600, renewIntervalMs: 60, signal: AbortSignal.timeout(3000) });
  await new Promise((resolve) => setTimeout(resolve, 200));
  const held = lease.held;
  const released = await lease.release();
  return `${lease.token} ${held ? 'held' : 'lost'} ${released ? 'released' : 'not released'}`;
}

/** What every step of `exercise` gives when everything is permitted. */
const EVERYTHING_WORKS: Record<string, unknown> = {
  connect: 'ok', ping: 'ok', check: 'ok',
  compareAndSet: CaSResult.Committed, 'compareAndSet mismatch': CaSResult.ExpectationMismatch,
  'compareAndSetWithHead mismatch': 0n, append: 1n, head: 1n, scan: 2,
  listKeys: [LONG_KEY, 'k'].sort().join(','),
  'scan (long history)': LONG_VERSIONS, truncate: 1, 'truncate (long history)': LONG_VERSIONS - 50, watch: '0,1', lease: '0 held released',
  readLease: '0 free not held', close: 'ok',
};

/** The ACL LOG entry that taking `permission` away should cause. */
function refusalOf(permission: string): (refusal: Refusal) => boolean {
  if (permission.startsWith('~') || permission.startsWith('%')) return (r) => r.reason === 'key';
  if (permission.startsWith('&')) return (r) => r.reason === 'channel';
  const command = permission.slice(1);
  return (r) => r.reason === 'command' && r.object === command;
}

/** The commands the named scripts pass to `redis.call`. */
function scriptCommands(names: Array<keyof typeof SCRIPTS>): string[] {
  const commands = new Set<string>();
  for (const name of names) {
    for (const [, command] of SCRIPTS[name].lua.matchAll(/(?:rcall|redis\.call)\('(\w+)'/g)) commands.add(command!.toLowerCase());
  }
  return [...commands].sort();
}

const docs = suite('ACL: the documentation');

docs('the ACL lines allow every command the scripts call, and docs/deployment.md gives them as this spec tests them', () => {
  const allowed = (acl: string): string[] => acl.split(' ').filter((p) => p.startsWith('+')).map((p) => p.slice(1));
  for (const command of scriptCommands(['head', 'scan', 'compareAndSet', 'truncate', 'lease', 'leaseRead'])) {
    assert.ok(allowed(STORE_ACL).includes(command), `STORE_ACL lacks +${command}, which a script calls`);
  }
  // SET is in the read scripts' text only through the epoch include, on paths that run in a write
  // script alone (checkEpoch with `write`); the reader's own exercise shows nothing refused.
  for (const command of scriptCommands(['head', 'scan', 'leaseRead']).filter((c) => c !== 'set')) {
    assert.ok(allowed(READER_ACL).includes(command), `READER_ACL lacks +${command}, which a read script calls`);
  }
  const deployment = readFileSync(join(REPO_ROOT, 'docs', 'deployment.md'), 'utf8').replace(/\s*\n\s*/g, ' ');
  assert.ok(deployment.includes(`ACL SETUSER myapp-store on >CHANGE-ME ${STORE_ACL}`), 'the store ACL line in docs/deployment.md');
  assert.ok(deployment.includes(`ACL SETUSER myapp-reader on >CHANGE-ME ${READER_ACL}`), 'the reader ACL line in docs/deployment.md');
  assert.ok(deployment.includes(`ACL SETUSER myapp-store on >CHANGE-ME ${CLUSTER_ACL}`), 'the Cluster ACL line in docs/deployment.md');
  assert.is(CLUSTER_ACL.split(' ').sort().join(' '), `${STORE_ACL} +cluster|slots +cluster|info +asking +client|setname`
    .replace('+publish +subscribe +unsubscribe', '+spublish +ssubscribe +sunsubscribe').split(' ').sort().join(' '));
});

docs.run();

const RELEASES = releases();

for (const release of RELEASES) {
  const test = suite(`ACL on ${release.name}`);
  let server: RedisServer;
  let admin: Redis;
  let deployment: Deployment;
  let notices: { restore(): void } | undefined;

  test.before(async () => {
    notices = muteReadyCheckNotices();
    server = await RedisServer.startInRange(7560, 7569, release.binary === undefined ? {} : { binary: release.binary });
    admin = new Redis(server.port, { lazyConnect: true });
    await admin.connect();
    deployment = { admin, servers: [admin], connect: (user, options) => RedisConsensus.connect(urlOf(server, user), options) };
  });

  test.after(async () => {
    admin?.disconnect();
    await server?.stop();
    notices?.restore();
  });

  test(`a user with exactly the documented ACL runs every operation, and the server refuses it nothing`, async () => {
    const user = await createUser(deployment, storeAcl(release));
    const outcome = await exercise(deployment, user);
    assert.equal(outcome, EVERYTHING_WORKS);
    assert.equal(await refusals(deployment, user), [], describeRefusals(await refusals(deployment, user)));
  });

  if (release.binary === undefined || release.name.startsWith('valkey-8')) {
    test('the documented ACL opens one store: a store under prefix myapp:sub is refused everything, and writes nothing', async () => {
      await reset(deployment);
      const user = await createUser(deployment, storeAcl(release));
      const own = await RedisConsensus.connect(urlOf(server, user), OPTIONS);
      const other = await RedisConsensus.connect(urlOf(server, user), { ...OPTIONS, prefix: `${PREFIX}:sub` });
      try {
        assert.is(await own.compareAndSet('k', null, { seqno: 0n, data: Buffer.from('mine') }), CaSResult.Committed);
        const refused: Array<[string, () => Promise<unknown>]> = [
          ['compareAndSet', () => other.compareAndSet('k', null, { seqno: 0n, data: Buffer.from('theirs') })],
          ['head', () => other.head('k')],
          ['scan', () => other.scan('k', 0n, SCAN_ALL)],
          ['truncate', () => other.truncate('k', 0n)],
          ['append', () => other.append('k', () => Buffer.from('theirs'))],
          ['listKeys', async () => {
            for await (const key of other.listKeys()) return key;
            return undefined;
          }],
        ];
        for (const [name, call] of refused) {
          const err = await rejection(call());
          assert.instance(err, ExternalError, name);
          assert.is((err as ExternalError).code, 'permission', `${name}: ${(err as Error).message}`);
        }
        assert.equal(await admin.keys(`${PREFIX}:sub:*`), [], 'nothing was written under myapp:sub');
        assert.ok((await refusals(deployment, user)).every((r) => r.reason === 'key' && r.object.startsWith(`${PREFIX}:sub:`)),
          describeRefusals(await refusals(deployment, user)));
      } finally {
        await other.close();
        await own.close();
      }
      // What the form without the brace would have allowed.
      const wide = await createUser(deployment, storeAcl(release).replaceAll(`${PREFIX}:{*`, `${PREFIX}:*`));
      const widened = await RedisConsensus.connect(urlOf(server, wide), { ...OPTIONS, prefix: `${PREFIX}:sub` });
      try {
        assert.is(await widened.compareAndSet('k', null, { seqno: 0n, data: Buffer.from('theirs') }), CaSResult.Committed);
      } finally {
        await widened.close();
      }
    });
  }

  if (release.binary === undefined) {
    test('every permission of the ACL is needed: without any one of them the server refuses something', async () => {
      const acl = storeAcl(release).split(' ');
      const unneeded: string[] = [];
      for (const permission of acl.filter((p) => !RESETS.has(p))) {
        const user = await createUser(deployment, acl.filter((p) => p !== permission).join(' '));
        const outcome = await exercise(deployment, user);
        const logged = await refusals(deployment, user);
        if (!logged.some(refusalOf(permission))) unneeded.push(`${permission} (refused: ${describeRefusals(logged)})`);
        const failed = Object.entries(outcome).filter(([step, result]) => result !== EVERYTHING_WORKS[step]).map(([step]) => step);
        console.log(`    without ${permission}: ${failed.length === 0 ? 'every step works' : `fails ${failed.join(', ')}`}`);
        await Promise.all(deployment.servers.map((one) => one.call('ACL', 'DELUSER', user)));
      }
      assert.equal(unneeded, []);
    });
  }

  test('without a permission checked before a command runs, the call fails determinate with code permission, not retried', async () => {
    const options = { ...OPTIONS, retry: { attempts: 5, minDelayMs: 1, maxDelayMs: 2 } };
    await admin.flushall();
    // The keys outside the ACL's pattern: a write is refused before its script runs.
    const elsewhere = await createUser(deployment, storeAcl(release).replace('~myapp:{*', '~other:*'));
    const writer = await RedisConsensus.connect(urlOf(server, elsewhere), options);
    try {
      const err = assertExternal(await rejection(writer.compareAndSet('k', null, { seqno: 0n, data: Buffer.from('x') })), true, 'permission');
      assert.is(err.attempts, 1, err.message);
      assert.is(await snapshot(admin, PREFIX), '', 'nothing written');
    } finally {
      await writer.close();
    }
    // SSCAN taken away: listKeys.
    const noScan = await createUser(deployment, storeAcl(release).replace(' +sscan', ''));
    const lister = await RedisConsensus.connect(urlOf(server, noScan), options);
    try {
      const keys = lister.listKeys();
      const err = assertExternal(await rejection(keys.next()), true, 'permission');
      assert.is(err.attempts, 1, err.message);
    } finally {
      await lister.close();
    }
    // INFO taken away: connect cannot read the eviction policy, and says why.
    const noInfo = await createUser(deployment, storeAcl(release).replace(' +info', ''));
    const err = assertExternal(await rejection(RedisConsensus.connect(urlOf(server, noInfo), options)), true, 'permission');
    assert.match(err.message, '+info');
    // ...unless told to only warn about the eviction policy.
    const captured = captureWarnings(/could not read the maxmemory-policy/);
    try {
      const unchecked = await RedisConsensus.connect(urlOf(server, noInfo), { ...options, evictionPolicy: 'warn' });
      await captured.stop();
      assert.ok(captured.warnings.some((warning) => warning.message.includes('could not read the maxmemory-policy')));
      await unchecked.close();
    } finally {
      await captured.stop();
    }
  });

  test('what depends on the setup: +select for a database other than 0, +client|setname with a connectionName', async () => {
    const user = await createUser(deployment, storeAcl(release));
    const err = assertExternal(await rejection(RedisConsensus.connect(`${urlOf(server, user)}/2`, OPTIONS)), true, 'permission');
    assert.match(err.message, '+select');
    // ioredis ignores a refused CLIENT SETNAME; the server logs it.
    const named = await RedisConsensus.connect(urlOf(server, user), OPTIONS, { connectionName: 'consensus-acl' });
    await named.ping();
    await named.close();
    const logged = await refusals(deployment, user);
    assert.ok(logged.some((r) => r.object === 'client|setname' || r.object === 'client'), describeRefusals(logged));
    const allowed = await createUser(deployment, `${storeAcl(release)} +select +client|setname`);
    const both = await RedisConsensus.connect(`${urlOf(server, allowed)}/2`, OPTIONS, { connectionName: 'consensus-acl' });
    try {
      assert.is(await both.compareAndSet('db2', null, { seqno: 0n, data: Buffer.from('x') }), CaSResult.Committed);
    } finally {
      await both.close();
    }
    assert.equal(await refusals(deployment, allowed), [], describeRefusals(await refusals(deployment, allowed)));
  });

  test('a command refused inside a script: code permission, indeterminate for a write, which may be half done', async () => {
    await admin.flushall();
    // compareAndSet-4.lua calls SADD and ZADD before HSET.
    const user = await createUser(deployment, storeAcl(release).replace(' +hset', ''));
    const consensus = await RedisConsensus.connect(urlOf(server, user), { ...OPTIONS, retry: { attempts: 5, minDelayMs: 1, maxDelayMs: 2 } });
    const full = await RedisConsensus.connect(`redis://127.0.0.1:${server.port}`, { prefix: PREFIX });
    try {
      const err = assertExternal(await rejection(consensus.compareAndSet('k', null, { seqno: 0n, data: Buffer.from('x') })), false, 'permission');
      assert.is(err.attempts, 1, err.message);
      assertExternal(await rejection(full.head('k')), true, 'payload-missing');
    } finally {
      await consensus.close();
      await full.close();
    }
  });

  test(`reads run as ${hasReadOnly(release) ? 'EVAL_RO on a client\'s first call of a script, EVALSHA_RO after' : 'EVALSHA, after one EVAL_RO the release does not know'}`, async () => {
    await reset(deployment);
    const calls = async (): Promise<Record<string, number>> => Object.fromEntries(
      [...String(await admin.info('commandstats')).matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)].map(([, command, count]) => [command, Number(count)]));
    const consensus = await RedisConsensus.connect(`redis://127.0.0.1:${server.port}`, { prefix: PREFIX });
    try {
      await consensus.compareAndSet('k', null, { seqno: 0n, data: Buffer.from('v0') });
      for (let i = 0; i < 3; i++) assert.is((await consensus.head('k'))?.seqno, 0n);
      assert.is((await consensus.scan('k', 0n, SCAN_ALL)).length, 1);
      const counted = await calls();
      // The compareAndSet is an EVAL (a connection's first call of a script).
      const sent = [counted['eval_ro'], counted['evalsha_ro'], counted['eval'], counted['evalsha']];
      if (hasReadOnly(release)) {
        // The first head and the scan: EVAL_RO; the other heads: EVALSHA_RO.
        assert.equal(sent, [2, 2, 1, undefined], JSON.stringify(counted));
        // A server that lost its scripts (SCRIPT FLUSH; the data kept, or the store epoch would
        // refuse the read as a reset store): NOSCRIPT, then EVAL_RO.
        await admin.script('FLUSH');
        await admin.call('CONFIG', 'RESETSTAT');
        assert.is((await consensus.head('k'))?.seqno, 0n);
        assert.equal([(await calls())['evalsha_ro'], (await calls())['eval_ro']], [1, 1]);
      } else {
        // The first head: EVAL_RO refused as unknown (not counted), then EVAL; the others EVALSHA.
        // The scan: EVAL, its first call on the connection.
        assert.equal(sent, [undefined, undefined, 3, 2], JSON.stringify(counted));
      }
    } finally {
      await consensus.close();
    }
  });

  if (hasSetInfo(release)) {
    test('ioredis\'s CLIENT SETINFO is refused without +client|setinfo: ignored, but logged', async () => {
      const user = await createUser(deployment, storeAcl(release).replace(' +client|setinfo', ''));
      const consensus = await RedisConsensus.connect(urlOf(server, user), OPTIONS);
      await consensus.ping();
      await consensus.close();
      const logged = await refusals(deployment, user);
      // Redis 6.2 logs the command, CLIENT; later releases the subcommand.
      assert.ok(logged.length > 0 && logged.every((r) => r.object === 'client|setinfo' || r.object === 'client'), describeRefusals(logged));
    });
  }

  if (hasReadOnly(release)) {
    test('a user with read access only (%R~) runs head, scan, listKeys, watch, readLease and ping, refused nothing', async () => {
      await admin.flushall();
      await admin.script('FLUSH');
      const writer = await RedisConsensus.connect(`redis://127.0.0.1:${server.port}`, { prefix: PREFIX });
      const user = await createUser(deployment, readerAcl(release));
      const reader = await RedisConsensus.connect(urlOf(server, user), OPTIONS);
      try {
        for (let seqno = 0n; seqno < 3n; seqno++) {
          await writer.compareAndSet('k', seqno === 0n ? null : seqno - 1n, { seqno, data: Buffer.from(`v${seqno}`) });
        }
        assert.is((await reader.head('k'))?.data.toString(), 'v2');
        assert.is((await reader.head('k'))?.seqno, 2n, 'EVALSHA_RO once the script is cached');
        assert.equal((await reader.scan('k', 1n, SCAN_ALL)).map((v) => v.seqno), [1n, 2n]);
        const keys: string[] = [];
        for await (const key of reader.listKeys()) keys.push(key);
        assert.equal(keys, ['k']);
        await reader.ping();
        await reader.check();
        const seen: bigint[] = [];
        for await (const head of reader.watch('k', { signal: AbortSignal.timeout(3000) })) {
          seen.push(head.seqno);
          if (head.seqno === 2n) await writer.compareAndSet('k', 2n, { seqno: 3n, data: Buffer.from('v3') });
          else break;
        }
        assert.equal(seen, [2n, 3n]);
        // A lease, read by the server's clock (TIME) with its queue (HGETALL), as EVAL_RO then EVALSHA_RO.
        const lease = await writer.acquireLease('lease', { ttlMs: 60_000, name: 'writer' });
        for (let read = 0; read < 2; read++) {
          const state = await reader.readLease('lease');
          assert.equal([state?.held, state?.record?.token, state?.record?.name, state?.waiting], [true, lease.token, 'writer', 0]);
          assert.ok(state!.remainingMs > 0 && state!.remainingMs <= 60_000, String(state?.remainingMs));
        }
        await lease.release();
        assert.is((await reader.readLease('lease'))?.held, false);
        assert.equal(await refusals(deployment, user), [], describeRefusals(await refusals(deployment, user)));
      } finally {
        await reader.close();
        await writer.close();
      }
    });

    test('its writes fail determinate with code permission, at once, and change nothing', async () => {
      await admin.flushall();
      const writer = await RedisConsensus.connect(`redis://127.0.0.1:${server.port}`, { prefix: PREFIX });
      const user = await createUser(deployment, readerAcl(release));
      const reader = await RedisConsensus.connect(urlOf(server, user), { ...OPTIONS, retry: { attempts: 5, minDelayMs: 1, maxDelayMs: 2 } });
      try {
        await writer.compareAndSet('k', null, { seqno: 0n, data: Buffer.from('v0') });
        await writer.compareAndSet('k', 0n, { seqno: 1n, data: Buffer.from('v1') });
        const before = await snapshot(admin, PREFIX);
        const writes: Array<[string, () => Promise<unknown>]> = [
          ['compareAndSet', () => reader.compareAndSet('k', 1n, { seqno: 2n, data: Buffer.from('x') })],
          ['compareAndSet of a new key', () => reader.compareAndSet('new', null, { seqno: 0n, data: Buffer.from('x') })],
          ['truncate', () => reader.truncate('k', 1n)],
          ['append', () => reader.append('k', () => Buffer.from('x'))],
          ['tryAcquireLease', () => reader.tryAcquireLease('lease')],
        ];
        for (const [what, write] of writes) {
          const err = assertExternal(await rejection(write()), true, 'permission');
          assert.is(err.attempts, 1, `${what}: ${err.message}`);
        }
        assert.is(await snapshot(admin, PREFIX), before);
      } finally {
        await reader.close();
        await writer.close();
      }
    });

    test('why reads run as EVAL_RO: a read-only user is refused EVAL of the very same read script', async () => {
      const user = await createUser(deployment, `${readerAcl(release)} +eval`);
      const raw = new Redis(urlOf(server, user));
      try {
        const names = keyNames(PREFIX, 'k');
        const args = [SCRIPTS.head.numberOfKeys, names.versions, names.data, names.epoch, ''] as const;
        const refused = await rejection(raw.eval(SCRIPTS.head.lua, ...args));
        assert.match(String(refused), /NOPERM .*key/i);
        assert.ok(Array.isArray(await raw.call('EVAL_RO', SCRIPTS.head.lua, ...args)));
      } finally {
        raw.disconnect();
      }
    });
  }

  test.run();
}

/** The Cluster's primaries (no replicas: ACLs are per server either way); bus ports 3 above. */
const CLUSTER_PORTS = [7570, 7571, 7572];

/** The cluster as the server on `port` sees it (CLUSTER NODES). */
async function clusterNodes(port: number): Promise<ClusterNode[]> {
  const text = String(await command(port, 'CLUSTER', 'NODES'));
  return text.trim().split('\n').map((line): ClusterNode => {
    const [id, address, flags, primary, , , , , ...slots] = line.split(' ');
    return {
      id: id!, port: Number(address!.split('@')[0]!.split(':')[1]), role: flags!.includes('master') ? 'master' : 'slave',
      primaryId: primary === '-' ? undefined : primary, failed: flags!.includes('fail'),
      slots: slots.filter((range) => !range.startsWith('[')).map((range) => {
        const [first, last] = range.split('-');
        return [Number(first), Number(last ?? first)];
      }),
    };
  });
}

const onPath = RELEASES.find((release) => release.binary === undefined);
if (onPath !== undefined && hasReadOnly(onPath)) {
  const test = suite(`ACL on a Redis Cluster (3 primaries, ${onPath.name})`);
  const servers: RedisServer[] = [];
  let deployment: Deployment;
  let notices: { restore(): void } | undefined;

  test.before(async () => {
    notices = muteReadyCheckNotices();
    servers.push(...await Promise.all(CLUSTER_PORTS.map((port) => RedisServer.start({
      port, args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(port + 3)],
    }))));
    const created = spawnSync('redis-cli', ['--cluster', 'create', ...CLUSTER_PORTS.map((port) => `127.0.0.1:${port}`),
      '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 });
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}\n${created.stderr}`);
    await until('the cluster is ok on every node', 20_000, async () => {
      const states = await Promise.all(CLUSTER_PORTS.map(async (port) => infoFields(String(await command(port, 'CLUSTER', 'INFO')))));
      return states.every((info) => info['cluster_state'] === 'ok');
    });
    const admin = new Cluster(CLUSTER_PORTS.map((port) => ({ host: '127.0.0.1', port })));
    const nodes = await Promise.all(CLUSTER_PORTS.map(async (port) => {
      const node = new Redis(port, { lazyConnect: true });
      await node.connect();
      return node;
    }));
    deployment = {
      admin, servers: nodes,
      connect: (user, options) => RedisConsensus.connectCluster([{ host: '127.0.0.1', port: CLUSTER_PORTS[0]! }], options,
        { redisOptions: { username: user, password: 'pw' } }),
    };
  });

  test.after(async () => {
    if (deployment !== undefined) {
      await (deployment.admin as Cluster).quit();
      for (const node of deployment.servers) node.disconnect();
    }
    await Promise.all(servers.map((server) => server.stop()));
    notices?.restore();
  });

  test('a user with exactly the documented Cluster ACL (on every primary) runs every operation, refused nothing', async () => {
    const user = await createUser(deployment, CLUSTER_ACL);
    const outcome = await exercise(deployment, user);
    assert.equal(outcome, EVERYTHING_WORKS);
    assert.equal(await refusals(deployment, user), [], describeRefusals(await refusals(deployment, user)));
  });

  test('every Cluster-only permission is needed: without any one of them the servers refuse something', async () => {
    const unneeded: string[] = [];
    for (const permission of ['+spublish', '+ssubscribe', '+sunsubscribe', '+cluster|slots', '+cluster|info', '+client|setname']) {
      const user = await createUser(deployment, CLUSTER_ACL.replace(` ${permission}`, ''));
      const outcome = await exercise(deployment, user);
      const logged = await refusals(deployment, user);
      if (!logged.some(refusalOf(permission))) unneeded.push(`${permission} (refused: ${describeRefusals(logged)})`);
      const failed = Object.entries(outcome).filter(([step, result]) => result !== EVERYTHING_WORKS[step]).map(([step]) => step);
      console.log(`    without ${permission}: ${failed.length === 0 ? 'every step works' : `fails ${failed.join(', ')}`}`);
    }
    assert.equal(unneeded, []);
  });

  test('while a slot migrates, reads and writes redirected with ASK need +asking', async () => {
    const seen: Record<string, unknown> = {};
    for (const [label, acl] of [['with', CLUSTER_ACL], ['without', CLUSTER_ACL.replace(' +asking', '')]] as const) {
      await reset(deployment);
      const user = await createUser(deployment, acl);
      const consensus = await deployment.connect(user, OPTIONS);
      // ioredis sends ASKING without handling its reply: refused, it is an unhandled rejection.
      const unhandled: unknown[] = [];
      const collect = (reason: unknown): void => {
        unhandled.push(reason);
      };
      process.on('unhandledRejection', collect);
      const names = keyNames(PREFIX, 'moving');
      const slot = keySlot(names.versions);
      const nodes = await clusterNodes(CLUSTER_PORTS[0]!);
      const from = slotOwners(nodes).get(slot)!;
      const to = nodes.find((node) => node.role === 'master' && node.id !== from.id)!;
      try {
        assert.is(await consensus.compareAndSet('moving', null, { seqno: 0n, data: Buffer.from('v0') }), CaSResult.Committed);
        // Every key of the slot on `to`, the slot still `from`'s: `from` answers ASK.
        await migrateKeys(slot, from, to, 0);
        const outcome = (promise: Promise<unknown>): Promise<unknown> => promise.then((value) => value,
          (err: unknown) => (err instanceof ExternalError ? `${err.determinate ? 'determinate' : 'indeterminate'} ${err.code}` : err));
        seen[`${label} +asking: head`] = await outcome(consensus.head('moving').then((head) => head?.seqno));
        seen[`${label} +asking: compareAndSet`] = await outcome(consensus.compareAndSet('moving', 0n, { seqno: 1n, data: Buffer.from('v1') }));
        seen[`${label} +asking: refused`] = describeRefusals(await refusals(deployment, user));
      } finally {
        await finishMove(nodes, slot, to);
        await consensus.close();
        // Unhandled rejections are reported after the turn that made them.
        await new Promise((resolve) => setTimeout(resolve, 10));
        process.off('unhandledRejection', collect);
      }
      seen[`${label} +asking: unhandled rejections`] = unhandled.length;
    }
    // Without +asking, ioredis leaves the refused ASKING replies unhandled: expected, and counted here.
    console.log(`    (expected) ${JSON.stringify(seen, (_key, value: unknown) => (typeof value === 'bigint' ? String(value) : value))}`);
    assert.is(seen['with +asking: head'], 0n);
    assert.is(seen['with +asking: compareAndSet'], CaSResult.Committed);
    assert.is(seen['with +asking: refused'], 'none');
    assert.match(String(seen['without +asking: refused']), 'command asking');
    assert.is(seen['with +asking: unhandled rejections'], 0);
    assert.match(String(seen['without +asking: head']), /^determinate /);
  });

  test.run();
}
