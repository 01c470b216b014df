/**
 * The commands, each a function of its `Context`. They read and change the store only through
 * the public `RedisConsensus` API, so they see exactly what an application sees.
 */
import { createInterface } from 'node:readline';
import type { RedisConsensus } from '../consensus.js';
import { SEQNO_MAX } from '../seqno.js';
import type { VersionedData } from '../types.js';
import { CliError, EXIT_FAILED, EXIT_MISSING_KEY, parseCount, parseSeqNo, usageError } from './args.js';
import type { CommandSpec, Globals, OptionValues } from './args.js';
import {
  acknowledgedLine, deletedLine, keyLine, leaseLine, pongLine, Progress, statsLines, versionLine,
} from './output.js';
import type { KeyStats, Output, StoreStats } from './output.js';

/** Versions read per `scan` call: bounds memory however long a history is. */
const PAGE = 1000;
const DEFAULT_TOP = 10;
/** How many keys `stats` reads at once. */
const STATS_IN_FLIGHT = 16;

/** What a command is given to run. */
export interface Context {
  readonly globals: Globals;
  readonly args: string[];
  readonly options: OptionValues;
  readonly out: Output;
  connect(): Promise<RedisConsensus>;
}

export interface Command extends CommandSpec {
  run(context: Context): Promise<void>;
}

export const COMMANDS: Readonly<Record<string, Command>> = {
  keys: {
    usage: 'keys [--progress]',
    summary: 'list every key of the store, one per line',
    details: `Streams every key that has ever had a committed version, each exactly once, in no
particular order. With --json each line is {"key": "..."} (exact for keys with newlines).
Walking a store visits its 1024 buckets; on a terminal a running count shows on stderr while
stdout goes elsewhere (keys > file).`,
    options: {
      progress: { type: 'boolean', help: `report a running count on stderr (default: when stderr is a terminal and stdout is not)` },
    },
    positionals: [],
    run: listKeys,
  },
  head: {
    usage: 'head KEY',
    summary: 'print the latest version of a key',
    details: `Prints "SEQNO<TAB>DATA" (or {"seqno", "bytes", "data"} with --json).
Exits with 4 when the key has no data.`,
    options: {},
    positionals: ['KEY'],
    run: printHead,
  },
  scan: {
    usage: 'scan KEY [--from SEQNO] [--limit N]',
    summary: 'print the versions of a key, oldest first',
    details: `Prints one version per line, "SEQNO<TAB>DATA" (or {"seqno", "bytes", "data"} with
--json), ascending. Reads ${PAGE} versions per call, so long histories stream in bounded memory;
each page is a consistent snapshot. Exits with 4 when the key has no data.`,
    options: {
      from: { type: 'string', arg: 'SEQNO', help: 'first seqno to print (default: 0)' },
      limit: { type: 'string', arg: 'N', help: 'print at most N versions (default: all)' },
    },
    positionals: ['KEY'],
    run: printVersions,
  },
  truncate: {
    usage: 'truncate KEY SEQNO [--yes]',
    summary: 'delete every version of a key below SEQNO',
    details: `Deletes every version with a seqno below SEQNO; the head is never deleted. SEQNO must
be at most the head. Asks for confirmation when stdin is a terminal; refuses to run without
--yes when it is not (exit 2). Prints how many versions were deleted (or {"deleted": N} with
--json). Exits with 4 when the key has no data, 1 when SEQNO is above the head or the answer is
not yes.`,
    options: { yes: { type: 'boolean', short: 'y', help: 'do not ask for confirmation' } },
    positionals: ['KEY', 'SEQNO'],
    run: truncate,
  },
  stats: {
    usage: 'stats [--top N] [--progress]',
    summary: 'count keys, versions and payload bytes; largest histories',
    details: `Walks every key (listKeys, then scan in pages of ${PAGE}): it reads every payload once,
so on a large store it takes a while and moves that many bytes. Not a snapshot: writes made
during the walk may or may not be counted.`,
    options: {
      top: { type: 'string', arg: 'N', help: `how many of the largest histories to list (default: ${DEFAULT_TOP})` },
      progress: { type: 'boolean', help: 'report a running count on stderr (default: when stderr is a terminal and stdout is not)' },
    },
    positionals: [],
    run: printStats,
  },
  watch: {
    usage: 'watch KEY [--from SEQNO]',
    summary: 'print each new head of a key as it commits (every version with --from), until interrupted',
    details: `Prints the key's head (once it has data), then one line per newer head as soon as it
commits: "SEQNO<TAB>DATA" (or {"seqno", "bytes", "data"} with --json, one object per line). Seqnos
strictly increase; a reader slower than the commits sees the latest head, not every version.
Listens for the commits' announcements (pub/sub), so an idle watch costs Redis nothing; reconnects
and re-reads by itself after a Redis restart or failover. Runs until interrupted (Ctrl-C, SIGTERM),
then exits with 0.

  --from SEQNO       print every version with a seqno >= SEQNO, in order, each once, then every
                     new one as it commits (follow); nothing is skipped, however slow the reader.
                     Versions truncated before they could be read end it with an error naming the
                     first missing seqno (exit 1).`,
    options: { from: { type: 'string' } },
    positionals: ['KEY'],
    run: watchHeads,
  },
  lease: {
    usage: 'lease KEY',
    summary: "show a lease's holder, fencing token and remaining time",
    details: `Reads the lease on KEY by the Redis server's clock (the lease script, which writes
nothing): "held by NAME (owner ID), token T, MS ms left, N waiting", or "free" with the last holder
(or {"key", "held", "state", "token", "owner", "name", "remainingMs", "waiting", "seqno"} with
--json). Exits with 4 when the key has no data, 1 when its head is not a lease record.`,
    options: {},
    positionals: ['KEY'],
    run: printLease,
  },
  'ack-reset': {
    usage: 'ack-reset [--yes]',
    summary: "acknowledge that the store's data was reset, so that its users write again",
    details: `After Redis lost the store's data (restarted without persistence, flushed, keys deleted),
every process that had used the store is refused (determinate error 'store-reset'; exit 5 here)
rather than committing seqnos from 0 again over a history it believed settled; after a failover lost
commits (a rollback), every process that had seen them is refused the same way ('store-rollback',
exit 5). This writes a fresh
epoch marker into each of the store's 1024 buckets; every process adopts it on its next call and
goes on from the data as it is now. What was committed before the reset stays lost. Asks for
confirmation when stdin is a terminal; refuses to run without --yes when it is not (exit 2). Prints
how many buckets had been marked reset or rolled back (or {"buckets", "reset", "rolledBack",
"unmarked"} with --json).`,
    options: { yes: { type: 'boolean', short: 'y', help: 'do not ask for confirmation' } },
    positionals: [],
    run: acknowledgeReset,
  },
  ping: {
    usage: 'ping',
    summary: 'check that Redis answers; print the round-trip time',
    details: 'Prints "PONG <ms> ms" (or {"ok": true, "ms": ...} with --json). Exits with 3 when\nRedis cannot be reached.',
    options: {},
    positionals: [],
    run: ping,
  },
};

async function listKeys({ options, out, connect, globals }: Context): Promise<void> {
  const consensus = await connect();
  const progress = new Progress(options['progress'] === true, 'keys', { printsToStdout: true });
  let count = 0;
  for await (const key of consensus.listKeys()) {
    await out.line(keyLine(key, globals));
    progress.update(++count);
  }
  progress.done(count);
}

async function printHead({ args, out, connect, globals }: Context): Promise<void> {
  const key = args[0]!;
  const consensus = await connect();
  const head = await consensus.head(key);
  if (head === null) throw missingKey(key);
  await out.line(versionLine(head, globals));
}

async function printLease({ args, out, connect, globals }: Context): Promise<void> {
  const key = args[0]!;
  const consensus = await connect();
  const lease = await consensus.readLease(key);
  if (lease === null) throw missingKey(key);
  if (lease.record === null) throw new CliError(EXIT_FAILED, `the head of key ${JSON.stringify(key)} is not a lease record`);
  await out.line(leaseLine(key, lease, globals));
}

async function printVersions({ args, options, out, connect, globals }: Context): Promise<void> {
  const key = args[0]!;
  const from = options['from'] === undefined ? 0n : parseSeqNo(options['from'] as string, '--from');
  const limit = options['limit'] === undefined ? SEQNO_MAX : parseCount(options['limit'] as string, '--limit');
  const consensus = await connect();
  let printed = 0;
  for await (const version of versionsOf(consensus, key, from, limit)) {
    await out.line(versionLine(version, globals));
    printed++;
  }
  // An empty range of a key that has data is not an error; a key with no data at all is.
  if (printed === 0 && (await consensus.head(key)) === null) throw missingKey(key);
}

async function truncate({ args, options, out, connect, globals }: Context): Promise<void> {
  const key = args[0]!;
  const seqno = parseSeqNo(args[1]!, 'SEQNO');
  if (options['yes'] !== true && !process.stdin.isTTY) {
    throw usageError('refusing to truncate without --yes: stdin is not a terminal to confirm on');
  }
  const consensus = await connect();
  const head = await consensus.head(key);
  if (head === null) throw missingKey(key);
  if (seqno > head.seqno) {
    throw new CliError(EXIT_FAILED,
      `SEQNO ${seqno} is above the head ${head.seqno} of key ${JSON.stringify(key)}: nothing deleted`);
  }
  if (options['yes'] !== true) {
    const answer = await ask(`Delete every version of key ${JSON.stringify(key)} below seqno ${seqno} ` +
      `(the head is ${head.seqno})? [y/N] `);
    if (!/^y(es)?$/i.test(answer.trim())) throw new CliError(EXIT_FAILED, 'not confirmed: nothing deleted');
  }
  const deleted = await consensus.truncate(key, seqno);
  await out.line(deletedLine(key, seqno, deleted, globals));
}

async function printStats({ options, out, connect, globals }: Context): Promise<void> {
  const top = options['top'] === undefined ? DEFAULT_TOP : Number(parseCount(options['top'] as string, '--top', 10_000n));
  const consensus = await connect();
  const progress = new Progress(options['progress'] === true, 'keys', { printsToStdout: false });
  const store: StoreStats = { keys: 0, versions: 0, payloadBytes: 0, largest: [] };
  const add = async (batch: string[]): Promise<void> => {
    for (const key of await Promise.all(batch.map((name) => keyStats(consensus, name)))) {
      store.keys++;
      store.versions += key.versions;
      store.payloadBytes += key.bytes;
      if (top > 0) {
        store.largest.push(key);
        // Trimmed only now and then: sorting on every key would cost more than the memory saved.
        if (store.largest.length > top * 2) store.largest = largestFirst(store.largest).slice(0, top);
      }
      progress.update(store.keys);
    }
  };
  // Several keys at once: one round trip per key in turn would leave Redis idle most of the time.
  let batch: string[] = [];
  for await (const key of consensus.listKeys()) {
    batch.push(key);
    if (batch.length === STATS_IN_FLIGHT) {
      await add(batch);
      batch = [];
    }
  }
  await add(batch);
  progress.done(store.keys);
  store.largest = largestFirst(store.largest).slice(0, top);
  for (const line of statsLines(store, globals)) await out.line(line);
}

async function watchHeads({ args, options, out, connect, globals }: Context): Promise<void> {
  const key = args[0]!;
  const from = options['from'] === undefined ? undefined : parseSeqNo(options['from'] as string, '--from');
  const consensus = await connect();
  const stop = new AbortController();
  const interrupted = (): void => stop.abort();
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    const versions = from === undefined ? consensus.watch(key, { signal: stop.signal }) : consensus.follow(key, { from, signal: stop.signal });
    for await (const version of versions) await out.line(versionLine(version, globals));
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  }
}

async function acknowledgeReset({ options, out, connect, globals }: Context): Promise<void> {
  if (options['yes'] !== true && !process.stdin.isTTY) {
    throw usageError('refusing to acknowledge a reset without --yes: stdin is not a terminal to confirm on');
  }
  const consensus = await connect();
  if (options['yes'] !== true) {
    const answer = await ask(`Acknowledge that the data of store ${JSON.stringify(globals.prefix)} was reset? Its users ` +
      'will write again from the data as it is now; what was committed before the reset stays lost. [y/N] ');
    if (!/^y(es)?$/i.test(answer.trim())) throw new CliError(EXIT_FAILED, 'not confirmed: nothing written');
  }
  await out.line(acknowledgedLine(await consensus.acknowledgeStoreReset(), globals));
}

async function ping({ out, connect, globals }: Context): Promise<void> {
  const consensus = await connect();
  await out.line(pongLine(await consensus.ping(), globals));
}

/**
 * The versions of `key` from seqno `from` on, at most `limit` of them, ascending, read `PAGE`
 * at a time: each page continues after the last seqno seen, since seqnos may have gaps.
 */
async function* versionsOf(
  consensus: RedisConsensus, key: string, from = 0n, limit = SEQNO_MAX,
): AsyncGenerator<VersionedData> {
  let next = from;
  let remaining = limit;
  while (remaining > 0n) {
    const page = await consensus.scan(key, next, remaining < BigInt(PAGE) ? remaining : PAGE);
    yield* page;
    remaining -= BigInt(page.length);
    const last = page.at(-1)?.seqno;
    if (page.length < PAGE || last === undefined || last === SEQNO_MAX) return;
    next = last + 1n;
  }
}

async function keyStats(consensus: RedisConsensus, key: string): Promise<KeyStats> {
  const stats: KeyStats = { key, versions: 0, bytes: 0 };
  for await (const version of versionsOf(consensus, key)) {
    stats.versions++;
    stats.bytes += version.data.length;
  }
  return stats;
}

function largestFirst(list: KeyStats[]): KeyStats[] {
  return list.sort((a, b) => b.versions - a.versions || b.bytes - a.bytes || (a.key < b.key ? -1 : 1));
}

function missingKey(key: string): CliError {
  return new CliError(EXIT_MISSING_KEY, `no data under key ${JSON.stringify(key)}`);
}

/** Asks on the terminal (prompt on stderr, so stdout stays clean) and returns the answer. */
function ask(prompt: string): Promise<string> {
  const terminal = createInterface({ input: process.stdin, output: process.stderr });
  return new Promise((resolve) => {
    let answered = false;
    terminal.question(prompt, (answer) => {
      answered = true;
      terminal.close();
      resolve(answer);
    });
    // End of input (Ctrl-D) is a no.
    terminal.once('close', () => {
      if (!answered) resolve('');
    });
  });
}
