/**
 * Exact outcomes under faults, on a private redis-server (never the shared one): lost replies,
 * late replies, refused connections, injected refusals, killed connections, flushed scripts and
 * a crashed and restarted server. A write whose outcome is unknown must be an indeterminate
 * ExternalError (never a wrong CaSResult from a blind re-send); anything known not to have run is
 * determinate; and the same RedisConsensus keeps working once the fault is gone.
 *
 * Uses ports 7150-7159. Bounded: about 15 s.
 */
import { Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSResult, ExternalError, RedisConsensus, SCAN_ALL } from '../lib/index.js';
import type { VersionedData } from '../lib/index.js';
import { REQUIRE_REDIS } from './support/backends.js';
import { FaultProxy } from './support/fault-proxy.js';
import { RedisServer, redisServerAvailable } from './support/redis-server.js';

const SERVER_PORT = 7150;
const PROXY_PORT = 7151;
const AOF_SERVER_PORT = 7152;

/** What a call came to: a result, or the kind of error it failed with. */
type Outcome<T> =
  | { kind: 'ok'; value: T }
  | { kind: 'determinate' | 'indeterminate'; error: ExternalError }
  | { kind: 'other'; error: unknown };

async function outcome<T>(call: Promise<T>): Promise<Outcome<T>> {
  try {
    return { kind: 'ok', value: await call };
  } catch (error) {
    if (error instanceof ExternalError) {
      return { kind: error.determinate ? 'determinate' : 'indeterminate', error };
    }
    return { kind: 'other', error };
  }
}

function describeOutcome(result: Outcome<unknown>): string {
  if (result.kind === 'ok') return `ok ${String(result.value)}`;
  return `${result.kind} ${String((result.error as Error)?.message ?? result.error)}`;
}

function assertKind(result: Outcome<unknown>, kind: Outcome<unknown>['kind'], context: string): void {
  assert.is(result.kind, kind, `${context}: expected ${kind}, got ${describeOutcome(result)}`);
}

/** Polls `condition` until it holds, or fails after `timeoutMs`. */
async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Retries a read until it succeeds (it fails determinate while Redis is away). */
async function readUntilOk<T>(read: () => Promise<T>, timeoutMs = 10000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await read();
    } catch (err) {
      if (!(err instanceof ExternalError) || !err.determinate || Date.now() > deadline) throw err;
    }
  }
}

let unique = 0;
/** A string found nowhere else, to mark one call's request on the wire. */
function marker(label: string): string {
  return `${label}-${process.pid}-${Date.now().toString(36)}-${unique++}`;
}

/** Asserts that `consensus` still reads and writes `key` correctly after a fault. */
async function assertStillWorks(consensus: RedisConsensus, key: string): Promise<void> {
  const head = await readUntilOk(() => consensus.head(key));
  const next = (head?.seqno ?? -1n) + 1n;
  const payload = marker('after');
  const result = await consensus.compareAndSet(key, head?.seqno ?? null, { seqno: next, data: Buffer.from(payload) });
  assert.is(result, CaSResult.Committed, 'the same instance commits after the fault');
  const after = await consensus.head(key);
  assert.is(after?.seqno, next);
  assert.is(after?.data.toString(), payload);
}

const available = redisServerAvailable();
if (!available) {
  if (REQUIRE_REDIS) throw new Error('REQUIRE_REDIS=1 but redis-server is not on PATH: the fault suite cannot run');
  console.warn('\n!!! SKIPPING spec/faults: redis-server is not on PATH !!!\n');
}

const faults = suite('faults');
let server: RedisServer;
let proxy: FaultProxy;
let admin: Redis;
const opened: RedisConsensus[] = [];
const clients: Redis[] = [];

/** A RedisConsensus made by `connect` (through the proxy unless told otherwise). */
async function open(options: { url?: string; timeoutMs?: number; retry?: { attempts?: number; minDelayMs?: number; maxDelayMs?: number } } = {}): Promise<RedisConsensus> {
  const consensus = await RedisConsensus.connect(options.url ?? proxy.url, {
    prefix: marker('faults'), timeoutMs: options.timeoutMs ?? 2000, retry: options.retry,
  });
  opened.push(consensus);
  return consensus;
}

/** A plain ioredis client (default options unless given), disconnected after the test. */
function newClient(url: string, options: RedisOptions = {}): Redis {
  const client = new Redis(url, options);
  client.on('error', () => {
    // The faults are deliberate; what they do to calls is what the tests check.
  });
  clients.push(client);
  return client;
}

faults.before(async () => {
  server = await RedisServer.start({ port: SERVER_PORT });
  proxy = await FaultProxy.start(PROXY_PORT, { port: SERVER_PORT });
  admin = new Redis(server.url);
  admin.on('error', () => {
    // CLIENT KILL kills this connection too; it reconnects.
  });
});

faults.after.each(async () => {
  proxy.reset();
  await Promise.all(opened.splice(0).map((consensus) => consensus.close()));
  for (const client of clients.splice(0)) client.disconnect();
});

faults.after(async () => {
  admin?.disconnect();
  await proxy?.close();
  await server?.stop();
});

faults('control: a default ioredis client re-sends a script whose reply was lost, so it runs twice', async () => {
  const client = newClient(proxy.url);
  const counter = marker('counter');
  client.defineCommand('faultsIncr', { numberOfKeys: 1, lua: "return redis.call('INCR', KEYS[1])" });
  const incr = (client as unknown as Record<string, (key: string) => Promise<number>>).faultsIncr!;
  await incr.call(client, `${counter}-warm`);
  proxy.count(counter);
  const cut = proxy.cutAfter(counter);
  const reply = await incr.call(client, counter);
  await cut;
  // The proxy sees the re-send; the caller sees only the second reply.
  assert.is(proxy.seen(counter), 2);
  assert.is(reply, 2);
  assert.is(await admin.get(counter), '2');
  await admin.del(counter, `${counter}-warm`);
});

faults('a compareAndSet whose reply was lost is indeterminate, ran exactly once, and was not re-sent', async () => {
  const consensus = await open();
  const key = 'lost-reply';
  assert.is(await consensus.compareAndSet(key, null, { seqno: 0, data: Buffer.from('v0') }), CaSResult.Committed);
  const payload = marker('lost');
  proxy.count(payload);
  const cut = proxy.cutAfter(payload);
  const result = await outcome(consensus.compareAndSet(key, 0, { seqno: 1, data: Buffer.from(payload) }));
  await cut;
  assertKind(result, 'indeterminate', 'compareAndSet with its reply lost');
  assert.match((result as { error: Error }).error.message, /^indeterminate: /);
  // Re-reading tells the outcome: it committed, once.
  const head = await readUntilOk(() => consensus.head(key));
  assert.is(head?.seqno, 1n);
  assert.is(head?.data.toString(), payload);
  assert.equal((await consensus.scan(key, 0, SCAN_ALL)).map((v) => v.seqno), [0n, 1n]);
  await assertStillWorks(consensus, key);
  // Any re-send would have gone out on reconnect, before the calls above.
  assert.is(proxy.seen(payload), 1, 'the write reached Redis exactly once');
});

faults('a client passed in with default options (auto-resend on) gets writes over a safe duplicate', async () => {
  const client = newClient(proxy.url);
  await waitFor('the client to be ready', () => client.status === 'ready');
  const accepted = proxy.stats.accepted;
  const consensus = new RedisConsensus(client, { prefix: marker('faults'), timeoutMs: 2000 });
  opened.push(consensus);
  // The duplicate is a second connection; it carries the writes.
  await waitFor('the write connection', () => proxy.stats.accepted === accepted + 1);
  const key = 'user-client';
  assert.is(await consensus.compareAndSet(key, null, { seqno: 0, data: Buffer.from('v0') }), CaSResult.Committed);
  const payload = marker('user');
  proxy.count(payload);
  const cut = proxy.cutAfter(payload);
  const result = await outcome(consensus.compareAndSet(key, 0, { seqno: 1, data: Buffer.from(payload) }));
  await cut;
  assertKind(result, 'indeterminate', 'compareAndSet over a user client with its reply lost');
  const head = await readUntilOk(() => consensus.head(key));
  assert.is(head?.data.toString(), payload);
  await assertStillWorks(consensus, key);
  assert.is(proxy.seen(payload), 1, 'the write reached Redis exactly once');
  // close() quits the duplicate it made, never the client it was given.
  opened.splice(opened.indexOf(consensus), 1);
  const connections = proxy.connections;
  await consensus.close();
  await waitFor('the duplicate to close', () => proxy.connections === connections - 1);
  assert.is(await client.ping(), 'PONG');
});

faults('with a client passed in, its read connection closing does not fail a write in flight on the other', async () => {
  const client = newClient(proxy.url);
  await waitFor('the client to be ready', () => client.status === 'ready');
  const consensus = new RedisConsensus(client, { prefix: marker('faults'), timeoutMs: 3000 });
  opened.push(consensus);
  const key = 'two-connections';
  assert.is(await consensus.compareAndSet(key, null, { seqno: 0, data: Buffer.from('v0') }), CaSResult.Committed);
  const readerId = await client.client('ID');
  const payload = marker('two');
  const held = proxy.holdReplyTo(payload);
  const write = outcome(consensus.compareAndSet(key, 0, { seqno: 1, data: Buffer.from(payload) }));
  await held;
  await admin.client('KILL', 'ID', String(readerId));
  await waitFor('the read connection to notice', () => client.status !== 'ready');
  proxy.releaseHeld();
  const result = await write;
  assertKind(result, 'ok', 'a write whose own connection stayed up');
  assert.is((result as { value: CaSResult }).value, CaSResult.Committed);
  await assertStillWorks(consensus, key);
});

faults('a client passed in with lazyConnect connects on the first call, writes included', async () => {
  const client = new Redis(proxy.url, { lazyConnect: true });
  client.on('error', () => {
    // Not expected here; a failure shows up in the calls.
  });
  clients.push(client);
  const consensus = new RedisConsensus(client, { prefix: marker('faults'), timeoutMs: 2000 });
  opened.push(consensus);
  const write = await outcome(consensus.compareAndSet('lazy', null, { seqno: 0, data: Buffer.from('v0') }));
  assertKind(write, 'ok', 'the first write on a lazy client');
  assert.is((await consensus.head('lazy'))?.data.toString(), 'v0');
});

faults('a reply held past the timeout: indeterminate for a write, determinate for a read', async () => {
  const consensus = await open({ timeoutMs: 2000 });
  const key = 'held';
  assert.is(await consensus.compareAndSet(key, null, { seqno: 0, data: Buffer.from('v0') }), CaSResult.Committed);
  const payload = marker('held');
  const held = proxy.holdReplyTo(payload);
  const started = Date.now();
  const write = await outcome(consensus.compareAndSet(key, 0, { seqno: 1, data: Buffer.from(payload) }, { timeoutMs: 300 }));
  const elapsed = Date.now() - started;
  await held;
  assertKind(write, 'indeterminate', 'a write with its reply held');
  assert.match((write as { error: Error }).error.message, /no reply within 300 ms/);
  // The per-call timeout, not the store's 2000 ms (bounds generous: this is not a speed test).
  assert.ok(elapsed >= 290 && elapsed < 1500, `failed at its per-call deadline (${elapsed} ms)`);
  proxy.releaseHeld();
  const head = await consensus.head(key);
  assert.is(head?.data.toString(), payload, 'the write did happen');

  const readKey = marker('held-read');
  const heldRead = proxy.holdReplyTo(readKey);
  const read = await outcome(consensus.head(readKey, { timeoutMs: 300 }));
  await heldRead;
  assertKind(read, 'determinate', 'a read with its reply held');
  proxy.releaseHeld();
  await assertStillWorks(consensus, key);
});

faults('limit: a request still in transit at the deadline is indeterminate, and may land later', async () => {
  const consensus = await open({ timeoutMs: 2000 });
  const key = 'in-transit';
  assert.is(await consensus.compareAndSet(key, null, { seqno: 0, data: Buffer.from('v0') }), CaSResult.Committed);
  const payload = marker('transit');
  const held = proxy.holdRequest(payload);
  const write = await outcome(consensus.compareAndSet(key, 0, { seqno: 1, data: Buffer.from(payload) }, { timeoutMs: 300 }));
  await held;
  assertKind(write, 'indeterminate', 'a write still in transit at its deadline');
  // The request has not reached Redis yet: a re-read now (on another connection) says "not
  // applied"...
  const other = await RedisConsensus.connect(proxy.url, { prefix: consensus.prefix });
  opened.push(other);
  assert.is((await other.head(key))?.seqno, 0n);
  proxy.releaseHeld();
  // ...and then it lands. Compare-and-set keeps this safe: the late write applies only if the
  // head is still the one it expected, so a caller that decides by another compareAndSet at the
  // same expected seqno (never by a read alone) sees one consistent history.
  const head = await readUntilOk(() => consensus.head(key));
  assert.is(head?.data.toString(), payload);
  await assertStillWorks(consensus, key);
});

faults('while connections are refused, writes and reads fail determinate and nothing is written later', async () => {
  const consensus = await open({ timeoutMs: 400 });
  const key = 'refused';
  assert.is(await consensus.compareAndSet(key, null, { seqno: 0, data: Buffer.from('v0') }), CaSResult.Committed);
  proxy.refuse();
  proxy.dropAll();
  // The read may meet the dying connection; once it failed, the client knows it is down.
  const read = await outcome(consensus.head(key));
  assertKind(read, 'determinate', 'a read while Redis cannot be reached');
  const payload = marker('refused');
  proxy.count(payload);
  const write = await outcome(consensus.compareAndSet(key, 0, { seqno: 1, data: Buffer.from(payload) }));
  assertKind(write, 'determinate', 'a write while Redis cannot be reached');
  assert.match((write as { error: Error }).error.message, /not connected to Redis .*nothing was sent/);
  assert.ok(proxy.stats.refused > 0, 'the proxy refused connections');
  proxy.accept();
  await assertStillWorks(consensus, key);
  assert.is(proxy.seen(payload), 0, 'the refused write was never sent, not even after reconnecting');
  assert.equal((await consensus.scan(key, 0, SCAN_ALL)).map((v) => v.data.toString()).includes(payload), false);
});

faults('connecting to a port where nothing listens is a determinate ExternalError', async () => {
  const result = await outcome(RedisConsensus.connect('redis://127.0.0.1:7159', { prefix: 'faults' }));
  assertKind(result, 'determinate', 'connect to a closed port');
  assert.match((result as { error: Error }).error.message, /7159/);
});

faults('a read retries across a short outage and succeeds', async () => {
  const consensus = await open({ timeoutMs: 3000 });
  const key = 'outage';
  assert.is(await consensus.compareAndSet(key, null, { seqno: 0, data: Buffer.from('v0') }), CaSResult.Committed);
  // A read in flight when the connection dies, then a short while when Redis cannot be reached.
  const held = proxy.holdReplyTo(key);
  const read = consensus.head(key);
  await held;
  proxy.refuse();
  proxy.dropAll();
  setTimeout(() => proxy.accept(), 300);
  const result = await outcome(read);
  assertKind(result, 'ok', 'a read across a short outage');
  assert.is((result as { value: VersionedData | null }).value?.data.toString(), 'v0');
  assert.ok(proxy.stats.refused > 0, 'the outage refused connections');
  await assertStillWorks(consensus, key);
});

faults('refusals before running are retried with backoff, a bounded number of times', async () => {
  const consensus = await open({ timeoutMs: 3000, retry: { attempts: 3, minDelayMs: 5, maxDelayMs: 20 } });
  const key = marker('loading');
  // Two refusals, then an answer: the third attempt succeeds.
  const failedBefore = proxy.stats.failed;
  void proxy.failWith(key, 'LOADING Redis is loading the dataset in memory', 2);
  assertKind(await outcome(consensus.head(key)), 'ok', 'a read refused twice');
  assert.is(proxy.stats.failed - failedBefore, 2);
  // Three refusals: the attempts are used up, and the last refusal is what the caller sees.
  void proxy.failWith(key, 'LOADING Redis is loading the dataset in memory', 3);
  const read = await outcome(consensus.head(key));
  assertKind(read, 'determinate', 'a read refused on every attempt');
  assert.match((read as { error: Error }).error.message, /LOADING/);
  assert.is(proxy.stats.failed - failedBefore, 5);
  // A write Redis refused before running it is retried too, and commits once.
  const payload = marker('busy');
  proxy.count(payload);
  void proxy.failWith(payload, 'BUSY Redis is busy running a script', 1);
  const write = await outcome(consensus.compareAndSet(key, null, { seqno: 0, data: Buffer.from(payload) }));
  assertKind(write, 'ok', 'a write refused once with BUSY');
  assert.is((write as { value: CaSResult }).value, CaSResult.Committed);
  // An error that may come from half-way through a script leaves a write's outcome unknown.
  const odd = marker('odd');
  void proxy.failWith(odd, 'ERR something went wrong in the script', 1);
  const oddWrite = await outcome(consensus.compareAndSet(key, 0, { seqno: 1, data: Buffer.from(odd) }));
  assertKind(oddWrite, 'indeterminate', 'a write failed by an unknown script error');
  await assertStillWorks(consensus, key);
});

faults('retries stop at the deadline', async () => {
  const consensus = await open({ timeoutMs: 300, retry: { attempts: 1000, minDelayMs: 5, maxDelayMs: 20 } });
  const key = marker('deadline');
  const failedBefore = proxy.stats.failed;
  void proxy.failWith(key, 'LOADING Redis is loading the dataset in memory', 100000);
  const started = Date.now();
  const read = await outcome(consensus.head(key));
  const elapsed = Date.now() - started;
  assertKind(read, 'determinate', 'a read refused until the deadline');
  const attempts = proxy.stats.failed - failedBefore;
  assert.ok(attempts > 1 && attempts < 1000, `retried a bounded number of times (${attempts})`);
  // Generous: this checks that it stops, not how fast it is.
  assert.ok(elapsed < 300 + 2000, `gave up near the deadline (${elapsed} ms)`);
  proxy.reset();
  await assertStillWorks(consensus, key);
});

/** What one worker of a workload tried and learned. */
interface Ledger {
  /** Writes known to have committed: seqno and payload. */
  committed: Array<[bigint, string]>;
  /** Payloads known not to have committed. */
  absent: string[];
  /** Every payload written, by seqno, whatever came of it. */
  tried: Map<bigint, Set<string>>;
  outcomes: Record<string, number>;
}

function newLedger(): Ledger {
  return { committed: [], absent: [], tried: new Map(), outcomes: {} };
}

/**
 * A sequential compare-and-set loop with unique payloads. After an indeterminate failure it
 * re-reads the seqno it tried, to learn whether its write is there.
 */
async function worker(consensus: RedisConsensus, key: string, id: string, done: () => boolean, ledger: Ledger): Promise<void> {
  const count = (what: string): void => {
    ledger.outcomes[what] = (ledger.outcomes[what] ?? 0) + 1;
  };
  for (let i = 0; !done(); i++) {
    let head: VersionedData | null;
    try {
      head = await consensus.head(key);
    } catch (err) {
      if (!(err instanceof ExternalError) || !err.determinate) throw err;
      count('read determinate');
      continue;
    }
    const next = (head?.seqno ?? -1n) + 1n;
    const payload = `${id}-${i}`;
    if (!ledger.tried.has(next)) ledger.tried.set(next, new Set());
    ledger.tried.get(next)!.add(payload);
    try {
      const result = await consensus.compareAndSet(key, head?.seqno ?? null, { seqno: next, data: Buffer.from(payload) });
      count(result);
      if (result === CaSResult.Committed) ledger.committed.push([next, payload]);
    } catch (err) {
      if (!(err instanceof ExternalError)) throw err;
      if (err.determinate) {
        count('write determinate');
        ledger.absent.push(payload);
        continue;
      }
      count('write indeterminate');
      const [found] = await readUntilOk(() => consensus.scan(key, next, 1));
      if (found?.seqno === next && found.data.toString() === payload) {
        count('indeterminate, found committed');
        ledger.committed.push([next, payload]);
      } else {
        count('indeterminate, found absent');
        ledger.absent.push(payload);
      }
    }
  }
}

/** Checks a workload's history against what its workers learned. */
async function checkHistory(consensus: RedisConsensus, key: string, ledgers: Ledger[]): Promise<void> {
  const versions = await readUntilOk(() => consensus.scan(key, 0, SCAN_ALL));
  const stored = new Map(versions.map((v) => [v.seqno, v.data.toString()]));
  versions.forEach((v, i) => assert.is(v.seqno, BigInt(i), 'seqnos are contiguous from 0'));
  for (const ledger of ledgers) {
    for (const [seqno, payload] of ledger.committed) {
      assert.is(stored.get(seqno), payload, `a committed write is present at ${seqno}`);
    }
    for (const payload of ledger.absent) {
      assert.not.ok([...stored.values()].includes(payload), `a write known absent (${payload}) is absent`);
    }
  }
  for (const [seqno, payload] of stored) {
    const writers = ledgers.some((ledger) => ledger.tried.get(seqno)?.has(payload));
    if (!payload.startsWith('after-')) assert.ok(writers, `the payload at ${seqno} was written for that seqno`);
  }
}

function totals(ledgers: Ledger[]): Record<string, number> {
  const sum: Record<string, number> = {};
  for (const ledger of ledgers) {
    for (const [what, n] of Object.entries(ledger.outcomes)) sum[what] = (sum[what] ?? 0) + n;
  }
  return sum;
}

/** Runs `workers` workers on one key until each has made `rounds` attempts, with `fault` running alongside. */
async function workload(
  consensuses: RedisConsensus[], key: string, rounds: number,
  fault: (done: () => boolean, ledgers: Ledger[]) => Promise<void>,
): Promise<Ledger[]> {
  const ledgers = consensuses.map(() => newLedger());
  let finished = 0;
  const attempts = (ledger: Ledger): number => [...ledger.tried.values()].reduce((n, set) => n + set.size, 0);
  const workersDone = (): boolean => finished === consensuses.length;
  const runs = consensuses.map(async (consensus, i) => {
    await worker(consensus, key, `w${i}`, () => attempts(ledgers[i]!) >= rounds, ledgers[i]!);
    finished++;
  });
  await Promise.all([...runs, fault(workersDone, ledgers)]);
  return ledgers;
}

/** `n` instances on one store at `url`, each with its own connection, as separate processes would be. */
async function peersOn(url: string, n: number, timeoutMs = 2000): Promise<RedisConsensus[]> {
  const prefix = marker('faults');
  return Promise.all(Array.from({ length: n }, async () => {
    const peer = await RedisConsensus.connect(url, { prefix, timeoutMs });
    opened.push(peer);
    return peer;
  }));
}

faults('CLIENT KILL of the library connections during a workload: no wrong outcome', async () => {
  const own = await peersOn(server.url, 2);
  // Clients passed in, as ioredis makes them by default (writes over a duplicate), and with
  // re-sending off (it carries the writes itself).
  const passed = [newClient(server.url), newClient(server.url, { autoResendUnfulfilledCommands: false })]
    .map((client) => {
      const consensus = new RedisConsensus(client, { prefix: own[0]!.prefix, timeoutMs: 2000 });
      opened.push(consensus);
      return consensus;
    });
  const peers = [...own, ...passed];
  const killer = newClient(server.url);
  let kills = 0;
  let killed = 0;
  const ledgers = await workload(peers, 'killed', 120, async (done) => {
    while (!done()) {
      killed += Number(await killer.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes'));
      kills++;
      await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 15));
    }
  });
  await checkHistory(peers[0]!, 'killed', ledgers);
  const seen = totals(ledgers);
  console.log(`  CLIENT KILL: ${kills} kills, ${killed} connections killed; outcomes ${JSON.stringify(seen)}`);
  assert.ok(killed > 0, 'connections were killed');
  for (const consensus of peers) await assertStillWorks(consensus, 'killed');
});

faults('SCRIPT FLUSH during a workload: scripts come back transparently, no errors at all', async () => {
  const peers = await peersOn(server.url, 3);
  const flusher = newClient(server.url);
  const noscripts = async (): Promise<number> =>
    Number(/errorstat_NOSCRIPT:count=(\d+)/.exec(await admin.info('errorstats'))?.[1] ?? 0);
  const noscriptsBefore = await noscripts();
  let flushes = 0;
  const ledgers = await workload(peers, 'flushed', 150, async (done) => {
    while (!done()) {
      await flusher.script('FLUSH');
      flushes++;
      await new Promise((resolve) => setTimeout(resolve, 2 + Math.random() * 5));
    }
  });
  const seen = totals(ledgers);
  const missed = await noscripts() - noscriptsBefore;
  console.log(`  SCRIPT FLUSH: ${flushes} flushes, ${missed} NOSCRIPT replies; outcomes ${JSON.stringify(seen)}`);
  assert.ok(missed > 0, 'calls met a flushed script cache');
  for (const what of Object.keys(seen)) {
    assert.ok(what === CaSResult.Committed || what === CaSResult.ExpectationMismatch, `no errors at all (saw ${what})`);
  }
  await checkHistory(peers[0]!, 'flushed', ledgers);
  for (const consensus of peers) await assertStillWorks(consensus, 'flushed');
});

faults('crash and restart of an appendfsync-always Redis: no acknowledged write lost, same instances go on', async () => {
  const aof = await RedisServer.start({ port: AOF_SERVER_PORT, args: ['--appendonly', 'yes', '--appendfsync', 'always'] });
  try {
    const peers = await peersOn(aof.url, 2, 500);
    let writesWhileDown: Outcome<CaSResult> | undefined;
    const ledgers = await workload(peers, 'restarted', 200, async (_done, running) => {
      await waitFor('some commits before the crash', () => running.every((ledger) => ledger.committed.length >= 10));
      await aof.crash();
      // Once a read failed, the client knows the server is gone (before, a write could still
      // meet the dying connection, and that is indeterminate).
      assertKind(await outcome(peers[0]!.head('down')), 'determinate', 'a read while the server is down');
      writesWhileDown = await outcome(peers[0]!.compareAndSet('down', null, { seqno: 0, data: Buffer.from('x') }));
      await aof.start();
    });
    const seen = totals(ledgers);
    console.log(`  crash/restart: outcomes ${JSON.stringify(seen)}`);
    assert.ok(writesWhileDown !== undefined);
    assertKind(writesWhileDown!, 'determinate', 'a write while the server is down');
    assert.is(await peers[0]!.head('down'), null, 'the write made while the server was down never happened');
    await checkHistory(peers[0]!, 'restarted', ledgers);
    for (const consensus of peers) await assertStillWorks(consensus, 'restarted');
  } finally {
    await aof.stop();
  }
});

if (available) faults.run();
