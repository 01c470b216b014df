/**
 * Hostile input, property-based (issue 18): every public method of RedisConsensus, its constructor,
 * `connect` / `connectCluster` and the CLI, called with random and hostile arguments on
 * ioredis-mock and a real Redis, checked against a small in-memory model. Properties:
 *
 * - every call resolves as the model says, or fails with a TypeError / RangeError (bad arguments:
 *   then nothing was written, byte for byte) or an ExternalError, within its deadline;
 * - no uncaught exception and no unhandled rejection, during the whole suite;
 * - a password given anywhere (URL, `?password=`, `redisOptions.password`, an ACL user's) never
 *   appears in any output, error message, `util.inspect(err)` or `JSON.stringify` of the error
 *   or of any error in its cause chain.
 *
 * Seeded (FUZZ_SEED overrides the seed; a failure prints the seed and the shrunk counterexample)
 * and bounded: a fixed number of runs per property, each property also stopped by a time limit.
 * Unreachable addresses use this spec's port range (7700-7719).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import fc from 'fast-check';
import RedisMock from 'ioredis-mock';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSResult, ExternalError, RedisConsensus, SCAN_ALL, SEQNO_MAX } from '../lib/index.js';
import type { CompareAndSetOutcome, RedisConsensusOptions, VersionedData } from '../lib/index.js';
import { backends, REDIS_URL } from './support/backends.js';
import type { Store } from './support/backends.js';
import { snapshot } from './support/snapshot.js';
import { shown } from './support/shown.js';

const SEED = Number(process.env.FUZZ_SEED ?? 18_018);
const CLI = fileURLToPath(new URL('../lib/cli/main.js', import.meta.url));
/** Nothing listens on these (this spec's range). */
const NOWHERE = ['127.0.0.1:7704', '127.0.0.1:7705'];
/** What every password in this suite contains, so that any trace of one is found. */
const SECRET = 'Zq9-fuzz-secret';
const MAX_KEY_BYTES = 64;
const MAX_PAYLOAD_BYTES = 256;
const STORE_OPTIONS: RedisConsensusOptions = {
  timeoutMs: 2000, maxKeyBytes: MAX_KEY_BYTES, maxPayloadBytes: MAX_PAYLOAD_BYTES, append: { timeoutMs: 2000 },
};
/** How long past its own timeout any call may take before the suite calls it hung. */
const SLACK_MS = 3000;

// Every uncaught exception and unhandled rejection of this suite, from the library or ioredis:
// listened for from the suite's first test on (`npm test` runs every spec in one process, and
// some provoke ioredis's own unhandled rejections on purpose, e.g. a Cluster user without +asking).
const escaped: unknown[] = [];
const onEscape = (err: unknown): void => {
  escaped.push(err);
};
let listening = false;
function listenForEscapes(): void {
  if (listening) return;
  listening = true;
  process.on('uncaughtException', onEscape);
  process.on('unhandledRejection', onEscape);
}


type Settled = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Runs `call` (sync throws included) and settles it, failing if it takes past `deadlineMs`. */
async function settle(call: () => unknown, deadlineMs: number, what: string): Promise<Settled> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${deadlineMs} ms`)), deadlineMs);
  });
  try {
    const value = await Promise.race([Promise.resolve().then(call), hung]);
    return { ok: true, value };
  } catch (error) {
    if (error instanceof Error && error.message.startsWith(`${what} did not settle`)) throw error;
    return { ok: false, error };
  } finally {
    clearTimeout(timer);
  }
}

/** An argument and whether the contract accepts it. */
interface Arg<T = unknown> {
  readonly value: T;
  readonly valid: boolean;
}
const good = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<Arg<T>> => arb.map((value) => ({ value, valid: true }));
const bad = (arb: fc.Arbitrary<unknown>): fc.Arbitrary<Arg> => arb.map((value) => ({ value, valid: false }));

/** Values of no use as anything here: wrong types of every kind. */
const junk = fc.oneof(
  fc.anything(),
  fc.constantFrom<unknown>(null, undefined, Symbol('s'), () => 1, new Map(), [], Number.NaN, -0, Infinity, 10n ** 30n),
);
const notString = junk.filter((v) => typeof v !== 'string');
const KEYS = ['a', 'b', '', 'ü€', 'line\nbreak', '{x}', 'k'.repeat(MAX_KEY_BYTES)];
const keyArb: fc.Arbitrary<Arg<string>> = fc.oneof(
  { weight: 6, arbitrary: good(fc.constantFrom(...KEYS)) },
  { weight: 1, arbitrary: bad(notString) as fc.Arbitrary<Arg<string>> },
  { weight: 1, arbitrary: bad(fc.constantFrom('k'.repeat(MAX_KEY_BYTES + 1), '€'.repeat(22), 'x'.repeat(70_000))) as fc.Arbitrary<Arg<string>> },
);
const seqnoArb: fc.Arbitrary<Arg> = fc.oneof(
  { weight: 6, arbitrary: good(fc.oneof(fc.bigInt({ min: 0n, max: 8n }), fc.integer({ min: 0, max: 8 }))) },
  {
    weight: 1,
    arbitrary: bad(fc.oneof(
      junk.filter((v) => typeof v !== 'bigint' && typeof v !== 'number'),
      fc.constantFrom<unknown>(-1, -1n, 1.5, Number.NaN, Infinity, 2 ** 53, SEQNO_MAX + 1n, 2n ** 64n),
    )),
  },
);
const dataArb: fc.Arbitrary<Arg> = fc.oneof(
  { weight: 6, arbitrary: good(fc.oneof(fc.uint8Array({ maxLength: 16 }), fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b)))) },
  {
    weight: 1,
    arbitrary: bad(fc.oneof(
      junk.filter((v) => !(v instanceof Uint8Array)),
      fc.constantFrom<unknown>('text', [1, 2], new ArrayBuffer(2), new Uint16Array(2), Buffer.alloc(MAX_PAYLOAD_BYTES + 1)),
    )),
  },
);
/** `{ timeoutMs, signal }` of a call: valid ones never time out; `aborted` uses an aborted signal. */
type CallOptionsArg = Arg & { readonly aborted?: boolean };
const callOptionsArb: fc.Arbitrary<CallOptionsArg> = fc.oneof(
  { weight: 6, arbitrary: good(fc.constantFrom<unknown>(undefined, {}, { timeoutMs: 2000 }, { signal: undefined })) },
  { weight: 1, arbitrary: fc.constant(null).map(() => ({ value: { signal: AbortSignal.abort() }, valid: true, aborted: true })) },
  {
    weight: 2,
    arbitrary: bad(fc.oneof(
      junk.filter((v) => v !== undefined && (typeof v !== 'object' || v === null || Array.isArray(v))),
      junk.filter((v) => v !== undefined && !(v instanceof AbortSignal)).map((signal) => ({ signal })),
      fc.constantFrom<unknown>(-1, 0, Number.NaN, Infinity, '5', null).map((timeoutMs) => ({ timeoutMs })),
      fc.constant({ signal: { aborted: false, addEventListener() {}, removeEventListener() {} } }),
    )),
  },
);

/** One operation, its arguments as generated. */
type Op =
  | { op: 'head'; key: Arg<string>; options: CallOptionsArg }
  | { op: 'compareAndSet' | 'compareAndSetWithHead'; key: Arg<string>; expected: Arg; next: Arg; options: CallOptionsArg }
  | { op: 'append'; key: Arg<string>; update: Arg; options: Arg }
  | { op: 'scan'; key: Arg<string>; from: Arg; limit: Arg; options: CallOptionsArg }
  | { op: 'truncate'; key: Arg<string>; seqno: Arg; options: CallOptionsArg }
  | { op: 'listKeys' | 'check' | 'ping' | 'acknowledgeStoreReset'; options: CallOptionsArg }
  | { op: 'watch'; key: Arg<string>; options: CallOptionsArg };

/** `expected` of a compare-and-set: mostly the model's head (a commit), sometimes null or a guess. */
const expectedArb: fc.Arbitrary<Arg> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ value: 'HEAD', valid: true }) },
  { weight: 1, arbitrary: fc.constant({ value: null, valid: true }) },
  { weight: 2, arbitrary: seqnoArb },
);
/** What `append`'s update does: valid updates return bytes or stop; hostile ones misbehave. */
const updateArb: fc.Arbitrary<Arg> = fc.oneof(
  { weight: 4, arbitrary: good(fc.constantFrom('bytes', 'async-bytes', 'stop')) },
  { weight: 1, arbitrary: fc.constantFrom('throws', 'returns-junk', 'never-settles').map((value) => ({ value, valid: true })) },
  { weight: 1, arbitrary: bad(notString.filter((v) => typeof v !== 'function')) },
);
const appendOptionsArb: fc.Arbitrary<Arg> = fc.oneof(
  { weight: 4, arbitrary: good(fc.constantFrom<unknown>(undefined, {}, { maxAttempts: 3 })) },
  {
    weight: 1,
    arbitrary: bad(fc.oneof(
      junk.filter((v) => v !== undefined && (typeof v !== 'object' || v === null || Array.isArray(v))),
      fc.constantFrom<unknown>({ maxAttempts: 0 }, { timeoutMs: -1 }, { backoff: 5 }, { backoff: { minDelayMs: -1 } }, { maxAttempts: 1.5 }),
    )),
  },
);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('head' as const), key: keyArb, options: callOptionsArb }),
  { weight: 3, arbitrary: fc.record({ op: fc.constantFrom('compareAndSet' as const, 'compareAndSetWithHead' as const), key: keyArb, expected: expectedArb, next: fc.record({ seqno: seqnoArb, data: dataArb }).map(({ seqno, data }) => ({ value: { seqno, data }, valid: true })), options: callOptionsArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('append' as const), key: keyArb, update: updateArb, options: appendOptionsArb }) },
  fc.record({ op: fc.constant('scan' as const), key: keyArb, from: seqnoArb, limit: fc.oneof({ weight: 4, arbitrary: good(fc.constantFrom<unknown>(0, 1, 3, 2n, SCAN_ALL)) }, { weight: 1, arbitrary: bad(fc.constantFrom<unknown>(-1, 1.5, Number.NaN, '3', null, SCAN_ALL + 1n)) }), options: callOptionsArb }),
  fc.record({ op: fc.constant('truncate' as const), key: keyArb, seqno: seqnoArb, options: callOptionsArb }),
  fc.record({ op: fc.constantFrom('listKeys' as const, 'check' as const, 'ping' as const), options: callOptionsArb }),
  // acknowledgeStoreReset writes 1,024 buckets: only hostile options here (rejected before sending).
  fc.record({ op: fc.constant('acknowledgeStoreReset' as const), options: callOptionsArb.filter((o) => !o.valid) }),
  fc.record({ op: fc.constant('watch' as const), key: keyArb, options: callOptionsArb }),
);

/** The in-memory model of a store: each key's versions, ascending, and the keys ever committed. */
class Model {
  readonly versions = new Map<string, VersionedData[]>();
  readonly registered = new Set<string>();

  head(key: string): VersionedData | null {
    return this.versions.get(key)?.at(-1) ?? null;
  }

  commit(key: string, version: VersionedData): void {
    const list = this.versions.get(key) ?? [];
    list.push({ seqno: version.seqno, data: Buffer.from(version.data) });
    this.versions.set(key, list);
    this.registered.add(key);
  }
}

const toBig = (value: unknown): bigint => BigInt(value as bigint | number);
const same = (a: VersionedData | null | undefined, b: VersionedData | null | undefined): boolean =>
  (a ?? null) === null ? (b ?? null) === null : b !== null && b !== undefined && a!.seqno === b.seqno && Buffer.from(a!.data).equals(Buffer.from(b.data));

/** Stats of the run, for the report. */
const counts = { calls: 0, resolved: 0, typeOrRange: 0, external: 0, runs: 0, connects: 0, cli: 0, constructors: 0 };

/**
 * Runs one operation on the store and checks it against the model (and updates the model).
 * Returns a description of a violation, or undefined.
 */
async function runOp(store: Store, model: Model, op: Op): Promise<string | undefined> {
  const c = store.consensus;
  const key = 'key' in op ? op.key : { value: '', valid: true };
  let valid = key.valid && op.options.valid;
  const aborted = (op.options as CallOptionsArg).aborted === true;
  const options = op.options.value as never;
  let expectedValue: unknown;
  let next: { seqno: Arg; data: Arg } | undefined;
  if (op.op === 'compareAndSet' || op.op === 'compareAndSetWithHead') {
    next = op.next.value as { seqno: Arg; data: Arg };
    expectedValue = op.expected.value === 'HEAD' ? (key.valid ? model.head(key.value)?.seqno ?? null : null) : op.expected.value;
    valid &&= op.expected.valid && next.seqno.valid && next.data.valid;
    // The contract: next.seqno must be above expected.
    if (valid && expectedValue !== null && toBig(next.seqno.value) <= toBig(expectedValue)) valid = false;
  }
  if (op.op === 'watch') {
    // A watch takes `{ signal }` only: another field, a bad timeoutMs included, is no concern of it.
    const given = op.options.value as { signal?: unknown } | undefined;
    valid = key.valid && (given === undefined || (typeof given === 'object' && given !== null && !Array.isArray(given) &&
      (given.signal === undefined || given.signal instanceof AbortSignal)));
  }
  if (op.op === 'append') valid &&= op.update.valid;
  if (op.op === 'scan') valid &&= op.from.valid && op.limit.valid;
  if (op.op === 'truncate') valid &&= op.seqno.valid;

  const before = valid && !aborted ? undefined : await snapshot(store.raw, store.prefix);
  const modelHead = key.valid ? model.head(key.value) : null;
  const call = (): unknown => {
    switch (op.op) {
      case 'head': return c.head(key.value, options);
      case 'compareAndSet':
      case 'compareAndSetWithHead':
        return c[op.op](key.value, expectedValue as never, { seqno: next!.seqno.value, data: next!.data.value } as never, options);
      case 'append':
        // An update that never settles is bounded by a short timeoutMs, to keep the run short.
        return c.append(key.value, makeUpdate(op.update.value) as never, op.update.value === 'never-settles' && op.options.valid
          ? { ...(op.options.value as object | undefined), timeoutMs: 200 } as never : options);
      case 'scan': return c.scan(key.value, op.from.value as never, op.limit.value as never, options);
      case 'truncate': return c.truncate(key.value, op.seqno.value as never, options);
      case 'listKeys': return (async () => {
        const keys: string[] = [];
        for await (const one of c.listKeys(options)) keys.push(one);
        return keys;
      })();
      case 'check': return c.check(options);
      case 'ping': return c.ping(options);
      case 'acknowledgeStoreReset': return c.acknowledgeStoreReset(options);
      case 'watch': return (async () => {
        const seen: VersionedData[] = [];
        // A valid watch is ended by a signal of the suite's (it waits for commits otherwise):
        // long enough for the head, when the key has one, to come first.
        const ending = valid && !aborted
          ? { ...(op.options.value as object | undefined), signal: AbortSignal.timeout(modelHead === null ? 150 : 2500) }
          : options;
        for await (const one of c.watch(key.value, ending as never)) {
          seen.push(one);
          break;
        }
        return seen;
      })();
    }
  };
  counts.calls++;
  const settled = await settle(call, (STORE_OPTIONS.timeoutMs! + SLACK_MS), op.op);
  const described = `${op.op}(${inspect(op, { depth: 4, breakLength: Infinity })})`;
  if (!settled.ok) {
    const { error } = settled;
    if (error instanceof TypeError || error instanceof RangeError) counts.typeOrRange++;
    else if (error instanceof ExternalError) counts.external++;
    else if (!(op.op === 'append' && op.update.value === 'throws' && (error as Error)?.message === 'update threw')) {
      return `${described} failed with neither TypeError, RangeError nor ExternalError: ${inspect(error)}`;
    }
  } else {
    counts.resolved++;
  }
  if (!valid) {
    if (settled.ok) return `${described} resolved, but its arguments are invalid`;
    if (!(settled.error instanceof TypeError || settled.error instanceof RangeError)) {
      return `${described} invalid, but failed with ${inspect(settled.error)}`;
    }
    const after = await snapshot(store.raw, store.prefix);
    return after === before ? undefined : `${described} was rejected but changed the store`;
  }
  if (aborted) {
    // A watch ends normally on its signal; a scan of limit 0 sends nothing, so has nothing to abort.
    const nothingToAbort = op.op === 'watch' || (op.op === 'scan' && op.limit.valid && toBig(op.limit.value) === 0n);
    if (settled.ok && !nothingToAbort) return `${described} resolved with an aborted signal`;
    if (!settled.ok && !(settled.error instanceof ExternalError && settled.error.code === 'aborted' && settled.error.determinate)) {
      return `${described} with an aborted signal failed with ${inspect(settled.error)}`;
    }
    const after = await snapshot(store.raw, store.prefix);
    return after === before ? undefined : `${described} was aborted before sending but changed the store`;
  }
  return checkAgainstModel(model, op, key.value, expectedValue, next, settled, described);
}

/** The update an append gets, by name. */
function makeUpdate(kind: unknown): unknown {
  switch (kind) {
    case 'bytes': return (head: VersionedData | null) => Buffer.from(`on ${head?.seqno ?? 'none'}`);
    case 'async-bytes': return async (head: VersionedData | null) => Buffer.from(`async on ${head?.seqno ?? 'none'}`);
    case 'stop': return () => undefined;
    case 'throws': return () => {
      throw new Error('update threw');
    };
    case 'returns-junk': return () => 'not bytes';
    case 'never-settles': return () => new Promise(() => {});
    default: return kind;
  }
}

function checkAgainstModel(
  model: Model, op: Op, key: string, expected: unknown, next: { seqno: Arg; data: Arg } | undefined, settled: Settled, described: string,
): string | undefined {
  const head = model.head(key);
  const fail = (why: string): string => `${described}: ${why}; got ${settled.ok ? inspect(settled.value) : inspect(settled.error)}`;
  switch (op.op) {
    case 'head':
      return settled.ok && same(settled.value as VersionedData | null, head) ? undefined : fail(`expected head ${inspect(head)}`);
    case 'compareAndSet':
    case 'compareAndSetWithHead': {
      const commits = (expected === null && head === null) || (expected !== null && head !== null && toBig(expected) === head.seqno);
      if (!settled.ok) return fail('a valid compare-and-set must not fail here');
      const result = op.op === 'compareAndSet' ? settled.value as CaSResult : (settled.value as CompareAndSetOutcome).result;
      if (result !== (commits ? CaSResult.Committed : CaSResult.ExpectationMismatch)) return fail(`expected ${commits ? 'Committed' : 'ExpectationMismatch'}`);
      if (op.op === 'compareAndSetWithHead' && !commits && !same((settled.value as CompareAndSetOutcome).head, head)) return fail('the mismatch\'s head is not the model\'s');
      if (commits) model.commit(key, { seqno: toBig(next!.seqno.value), data: Buffer.from(next!.data.value as Uint8Array) });
      return undefined;
    }
    case 'append': {
      const kind = op.update.value;
      if (kind === 'throws') return !settled.ok && (settled.error as Error).message === 'update threw' ? undefined : fail('expected the update\'s error');
      if (kind === 'returns-junk') return !settled.ok && settled.error instanceof TypeError ? undefined : fail('expected a TypeError');
      if (kind === 'never-settles') {
        return !settled.ok && settled.error instanceof ExternalError && settled.error.code === 'timeout' && settled.error.determinate
          ? undefined : fail('expected a determinate timeout');
      }
      if (!settled.ok) return fail('a valid append must not fail here');
      const appended = settled.value as { committed: boolean; head: VersionedData | null };
      if (kind === 'stop') return !appended.committed && same(appended.head, head) ? undefined : fail('expected no commit, on the model\'s head');
      const seqno = head === null ? 0n : head.seqno + 1n;
      const data = Buffer.from(`${kind === 'async-bytes' ? 'async ' : ''}on ${head?.seqno ?? 'none'}`);
      if (!appended.committed || !same(appended.head, { seqno, data })) return fail(`expected a commit of ${seqno}`);
      model.commit(key, { seqno, data });
      return undefined;
    }
    case 'scan': {
      const from = toBig(op.from.value);
      const limit = toBig(op.limit.value);
      const want = (model.versions.get(key) ?? []).filter((v) => v.seqno >= from).slice(0, limit >= SCAN_ALL ? undefined : Number(limit));
      const got = settled.ok ? settled.value as VersionedData[] : undefined;
      return got !== undefined && got.length === want.length && got.every((v, i) => same(v, want[i])) ? undefined : fail(`expected ${want.length} versions`);
    }
    case 'truncate': {
      const upper = toBig(op.seqno.value);
      if (head === null || upper > head.seqno) {
        return !settled.ok && settled.error instanceof ExternalError && settled.error.code === 'truncate-above-head' && settled.error.determinate
          ? undefined : fail('expected truncate-above-head');
      }
      const list = model.versions.get(key)!;
      const kept = list.filter((v) => v.seqno >= upper);
      if (!settled.ok || settled.value !== list.length - kept.length) return fail(`expected ${list.length - kept.length} deleted`);
      model.versions.set(key, kept);
      return undefined;
    }
    case 'listKeys': {
      const got = settled.ok ? [...(settled.value as string[])].sort() : undefined;
      const want = [...model.registered].sort();
      return got !== undefined && JSON.stringify(got) === JSON.stringify(want) ? undefined : fail(`expected ${JSON.stringify(want)}`);
    }
    case 'check':
      return settled.ok ? undefined : fail('check must pass');
    case 'ping':
      return settled.ok && typeof settled.value === 'number' ? undefined : fail('expected a round-trip time');
    case 'watch': {
      if (!settled.ok) return fail('a valid watch must not fail');
      const seen = settled.value as VersionedData[];
      return head === null ? (seen.length === 0 ? undefined : fail('nothing to see'))
        : (seen.length === 1 && same(seen[0], head) ? undefined : fail('expected the head first'));
    }
    case 'acknowledgeStoreReset':
      return fail('never run with valid options here');
  }
}

const RUNS = { mock: 60, redis: 40 };
const OPS_PER_RUN = 14;

for (const backend of await backends()) {
  const test = suite(`fuzz: every method with random and hostile arguments, against a model (${backend.name})`);

  test('each call resolves as the model says, or fails as the contract names, in time, writing nothing when refused', async () => {
    listenForEscapes();
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: OPS_PER_RUN }), async (ops) => {
      counts.runs++;
      const store = await backend.store(STORE_OPTIONS);
      const model = new Model();
      try {
        for (const op of ops) {
          const violation = await runOp(store, model, op).catch((err: unknown) => `${op.op} threw in the suite: ${inspect(err)}`);
          if (violation !== undefined) {
            // fast-check reports the counterexample; this says what was wrong with it.
            console.error(`    violation: ${violation.slice(0, 2000)}`);
            throw new Error(violation);
          }
        }
      } finally {
        await store.dispose();
      }
    }), { seed: SEED, numRuns: backend.name === 'ioredis-mock' ? RUNS.mock : RUNS.redis, interruptAfterTimeLimit: 25_000, markInterruptAsFailure: false });
  });

  test.after(() => backend.close());
  test.run();
}

const options = suite('fuzz: constructor options');

options('new RedisConsensus(client, anything) constructs or throws a TypeError / RangeError, and arms nothing', async () => {
  listenForEscapes();
  const client = new RedisMock({ port: 41_818 });
  const fieldArb = fc.record({
    prefix: fc.option(fc.oneof(fc.string(), junk), { nil: undefined }),
    timeoutMs: fc.option(fc.oneof(fc.integer({ min: -5, max: 5000 }), junk), { nil: undefined }),
    retry: fc.option(fc.oneof(fc.record({ attempts: fc.oneof(fc.integer({ min: -1, max: 5 }), junk) }, { requiredKeys: [] }), junk), { nil: undefined }),
    durability: fc.option(fc.oneof(fc.record({ replicas: fc.oneof(fc.integer({ min: -1, max: 2 }), junk) }), junk), { nil: undefined }),
    append: fc.option(fc.oneof(fc.record({ maxAttempts: fc.oneof(fc.integer({ min: -1, max: 5 }), junk), rememberHeads: fc.oneof(fc.integer({ min: -1, max: 5 }), junk) }, { requiredKeys: [] }), junk), { nil: undefined }),
    watch: fc.option(fc.oneof(fc.record({ mode: fc.oneof(fc.constantFrom('poll', 'pubsub'), junk) }, { requiredKeys: [] }), junk), { nil: undefined }),
    maxKeyBytes: fc.option(fc.oneof(fc.integer({ min: -1, max: 100 }), junk), { nil: undefined }),
    maxPayloadBytes: fc.option(fc.oneof(fc.integer({ min: -1, max: 100 }), junk), { nil: undefined }),
    evictionPolicy: fc.option(fc.oneof(fc.constantFrom('refuse', 'warn'), junk), { nil: undefined }),
    observer: fc.option(fc.oneof(fc.constant({}), junk), { nil: undefined }),
  }, { requiredKeys: [] });
  await fc.assert(fc.asyncProperty(fc.oneof(fieldArb, junk), async (given) => {
    counts.constructors++;
    let made: RedisConsensus | undefined;
    try {
      made = new RedisConsensus(client, given as never);
    } catch (err) {
      if (!(err instanceof TypeError || err instanceof RangeError)) throw new Error(`constructor threw ${inspect(err)}`);
      return;
    }
    const isObject = given === undefined || (typeof given === 'object' && given !== null && !Array.isArray(given));
    if (!isObject) throw new Error(`new RedisConsensus(client, ${inspect(given)}) accepted options that are no object`);
    await made.close();
  }), { seed: SEED, numRuns: 300 });
});

options.run();

const connecting = suite('fuzz: connect, connectCluster and the CLI never show a password');

/** A URL with SECRET somewhere, of a random shape, some broken, some unreachable, some good. */
const urlArb = fc.record({
  scheme: fc.constantFrom('redis://', 'rediss://', 'http://', '//', '', 'redis:', 'REDIS://'),
  user: fc.constantFrom('', 'nobody', 'us%zzer'),
  password: fc.constantFrom(SECRET, `${SECRET}%zz`, `${SECRET}%40x`, '', `${SECRET}/x`),
  host: fc.constantFrom(new URL(REDIS_URL).host, ...NOWHERE, '[::1', ''),
  path: fc.constantFrom('', '/', '/0', '/1', '/abc', '/-1', '/99', `/${SECRET}`),
  query: fc.constantFrom('', '?db=abc', '?db=1', `?password=${SECRET}`, '?db=', `?username=nobody&password=${SECRET}`),
}).map(({ scheme, user, password, host, path, query }) => {
  const auth = user === '' && password === '' ? '' : `${user}${password === '' ? '' : `:${password}`}@`;
  return `${scheme}${auth}${host}${path}${query}`;
});
const redisOptionsArb = fc.oneof(
  fc.constantFrom<unknown>(undefined, {}, { password: SECRET }, { username: 'nobody', password: SECRET }, { db: -1 }, { db: 'abc' }, { db: 1.5 }, { db: 1 }),
  junk,
);
const connectOptionsArb = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ timeoutMs: 400 }) },
  { weight: 1, arbitrary: fc.oneof(junk, fc.constant({ timeoutMs: 400, signal: {} }), fc.constant({ timeoutMs: 400, signal: AbortSignal.abort() })) },
);

connecting('connect(url, options, redisOptions) and connectCluster: a store, or TypeError / RangeError / ExternalError, in time, never showing the password', async () => {
  listenForEscapes();
  // What the process prints meanwhile (ioredis's warnings, process warnings) must not show it either.
  const printed: string[] = [];
  const writes = { out: process.stdout.write, err: process.stderr.write };
  const capture = (stream: NodeJS.WriteStream, original: typeof process.stdout.write) => ((chunk: unknown, ...rest: unknown[]) => {
    printed.push(String(chunk));
    return (original as (...args: unknown[]) => boolean).call(stream, chunk, ...rest);
  }) as typeof process.stdout.write;
  const onWarning = (warning: Error): void => {
    printed.push(shown(warning));
  };
  process.stdout.write = capture(process.stdout, writes.out);
  process.stderr.write = capture(process.stderr, writes.err);
  process.on('warning', onWarning);
  try {
    await connectProperty();
  } finally {
    process.stdout.write = writes.out;
    process.stderr.write = writes.err;
    process.off('warning', onWarning);
  }
  assert.ok(!printed.join('').includes(SECRET), 'the process printed the password');
});

async function connectProperty(): Promise<void> {
  await fc.assert(fc.asyncProperty(fc.boolean(), urlArb, connectOptionsArb, redisOptionsArb, async (cluster, url, given, redisOptions) => {
    counts.connects++;
    const call = cluster
      ? () => RedisConsensus.connectCluster([{ host: url.includes('7704') ? '127.0.0.1' : 'localhost', port: 7704 }], given as never,
        { redisOptions: redisOptions as never } as never)
      : () => RedisConsensus.connect(url, given as never, redisOptions as never);
    const settled = await settle(call, 400 + SLACK_MS, cluster ? 'connectCluster' : `connect(${url})`);
    if (settled.ok) {
      await (settled.value as RedisConsensus).close();
      return;
    }
    const { error } = settled;
    if (!(error instanceof TypeError || error instanceof RangeError || error instanceof ExternalError)) {
      throw new Error(`connect(${url}) failed with ${inspect(error)}`);
    }
    if (shown(error).includes(SECRET)) throw new Error(`connect(${url}) showed the password: ${shown(error)}`);
  }), { seed: SEED, numRuns: 60, interruptAfterTimeLimit: 20_000, markInterruptAsFailure: false });
}

/** Runs the CLI; killed (code null) if it hangs. */
function cli(args: string[], env: Record<string, string | undefined>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { out += chunk; });
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, out });
    });
  });
}

connecting('the CLI, with random and hostile arguments and URLs: a documented exit code, no stack trace, never the password', async () => {
  const argsArb = fc.tuple(
    fc.constantFrom(['ping'], ['keys'], ['head', 'k'], ['scan', 'k', '--from', 'x'], ['truncate', 'k', '-1'], ['stats', '--top', 'many'], ['bogus'], ['head'], []),
    fc.array(fc.constantFrom('--json', '--cluster', '--timeout', '500', '--encoding', 'hex', '--prefix', 'a{b', '--nope'), { maxLength: 3 }),
  ).map(([command, extra]) => [...extra, ...command]);
  await fc.assert(fc.asyncProperty(urlArb, argsArb, fc.boolean(), async (url, args, viaEnv) => {
    counts.cli++;
    const argv = viaEnv ? ['--timeout', '500', ...args] : ['--url', url, '--timeout', '500', ...args];
    // With the library's debug log on: it names URLs and errors too.
    const { code, out } = await cli(argv, { REDIS_URL: viaEnv ? url : REDIS_URL, NODE_DEBUG: 'redis-consensus' });
    const what = `redis-consensus ${argv.join(' ')} (REDIS_URL ${viaEnv ? url : 'default'})`;
    if (code === null || code < 0 || code > 5) throw new Error(`${what}: exit ${code}\n${out}`);
    if (out.includes(SECRET)) throw new Error(`${what} showed the password:\n${out}`);
    if (/\n\s+at /.test(out)) throw new Error(`${what} printed a stack trace:\n${out}`);
  }), { seed: SEED, numRuns: 16, interruptAfterTimeLimit: 20_000, markInterruptAsFailure: false });
});

connecting('no uncaught exception and no unhandled rejection escaped during the suite', async () => {
  // ioredis's late events (a reconnect's error, a select after close) come after the calls.
  await new Promise((resolve) => setTimeout(resolve, 300));
  console.log(`    fuzz (seed ${SEED}): ${counts.runs} runs, ${counts.calls} calls (${counts.resolved} resolved, ` +
    `${counts.typeOrRange} TypeError/RangeError, ${counts.external} ExternalError), ${counts.constructors} constructions, ` +
    `${counts.connects} connects, ${counts.cli} CLI runs`);
  process.off('uncaughtException', onEscape);
  process.off('unhandledRejection', onEscape);
  assert.ok(listening, 'the suite listened');
  assert.equal(escaped.map((err) => inspect(err)), []);
  assert.ok(counts.calls > 100 && counts.connects > 20 && counts.cli > 5, 'the fuzz ran');
});

connecting.run();
