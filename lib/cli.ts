#!/usr/bin/env node
/**
 * `redis-consensus`: inspect and administer a store from a shell.
 *
 * Everything goes through the public `RedisConsensus` API, so the command sees exactly what an
 * application sees. Exit codes: 0 done, 1 failed or not confirmed, 2 bad arguments, 3 Redis
 * unreachable or failing, 4 no such key.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
// util.parseArgs: Node's own, well-kept argument parser (Node >= 18.3), so the command adds no
// runtime dependency beyond ioredis.
import { parseArgs } from 'node:util';
import { DEFAULT_URL, redactUrl } from './client.js';
import { RedisConsensus } from './consensus.js';
import type { VersionedData } from './types.js';
import { ExternalError } from './errors.js';
import { checkPrefix } from './arguments.js';
import { DEFAULT_PREFIX } from './layout.js';
import { DEFAULT_TIMEOUT_MS } from './options.js';
import { SEQNO_MAX } from './seqno.js';

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_UNREACHABLE = 3;
const EXIT_MISSING_KEY = 4;

/** Versions read per `scan` call: bounds memory however long a history is. */
const PAGE = 1000;
/** How often, in keys, `keys` and `stats` report progress. */
const PROGRESS_EVERY = 1000;
const DEFAULT_TOP = 10;
/** How many keys `stats` reads at once. */
const STATS_IN_FLIGHT = 16;
const ENCODINGS = ['utf8', 'hex', 'base64'] as const;
type Encoding = (typeof ENCODINGS)[number];

/** A failure with the exit code it stands for; its message is printed as is. */
class CliError extends Error {
  constructor(readonly exitCode: number, message: string) {
    super(message);
  }
}

const usageError = (message: string): CliError => new CliError(EXIT_USAGE, message);

type OptionSpec = { type: 'string' | 'boolean'; short?: string };

const GLOBAL_OPTIONS = {
  url: { type: 'string' },
  prefix: { type: 'string' },
  cluster: { type: 'boolean' },
  json: { type: 'boolean' },
  encoding: { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const satisfies Record<string, OptionSpec>;

const GLOBAL_HELP = `Global options:
  --url URL          Redis to use (default: $REDIS_URL, else ${DEFAULT_URL}); rediss:// for TLS
  --prefix PREFIX    the store's key prefix (default: '${DEFAULT_PREFIX}', as the library)
  --cluster          connect to a Redis Cluster, with the url's host:port as the startup node
  --json             machine output: one JSON object per line; seqnos as strings
  --encoding ENC     how payloads are printed: utf8, hex or base64
                     (default: utf8, or base64 with --json)
  --timeout MS       deadline of each Redis call, in ms (default: ${DEFAULT_TIMEOUT_MS})
  -h, --help         help (also: redis-consensus help COMMAND)
  --version          the package version

Exit codes: 0 done, 1 failed or not confirmed, 2 bad arguments, 3 Redis unreachable or
failing, 4 no such key.`;

/** The parsed global settings every command gets. */
interface Globals {
  url: string;
  prefix: string;
  cluster: boolean;
  json: boolean;
  encoding: Encoding;
  timeoutMs: number;
}

/** What a command is given to run. */
interface Context {
  readonly globals: Globals;
  readonly args: string[];
  readonly options: Record<string, string | boolean | undefined>;
  readonly out: Output;
  connect(): Promise<RedisConsensus>;
}

interface Command {
  readonly usage: string;
  readonly summary: string;
  readonly details: string;
  readonly options: Record<string, OptionSpec>;
  /** Names of the positional arguments, all required. */
  readonly positionals: readonly string[];
  run(context: Context): Promise<void>;
}

const COMMANDS: Record<string, Command> = {
  keys: {
    usage: 'keys [--progress]',
    summary: 'list every key of the store, one per line',
    details: `Streams every key that has ever had a committed version, each exactly once, in no
particular order. With --json each line is {"key": "..."} (exact for keys with newlines).

Options:
  --progress         report a running count on stderr every ${PROGRESS_EVERY} keys (on by
                     default when stderr is a terminal)`,
    options: { progress: { type: 'boolean' } },
    positionals: [],
    async run({ options, out, connect, globals }) {
      const consensus = await connect();
      const progress = new Progress(options['progress'] === true, 'keys');
      let count = 0;
      for await (const key of consensus.listKeys()) {
        await out.line(globals.json ? JSON.stringify({ key }) : key);
        progress.update(++count);
      }
      progress.done(count);
    },
  },
  head: {
    usage: 'head KEY',
    summary: 'print the latest version of a key',
    details: `Prints "SEQNO<TAB>DATA" (or {"seqno", "bytes", "data"} with --json).
Exits with 4 when the key has no data.`,
    options: {},
    positionals: ['KEY'],
    async run({ args, out, connect, globals }) {
      const key = args[0]!;
      const consensus = await connect();
      const head = await consensus.head(key);
      if (head === null) throw missingKey(key);
      await out.line(formatVersion(head, globals));
    },
  },
  scan: {
    usage: 'scan KEY [--from SEQNO] [--limit N]',
    summary: 'print the versions of a key, oldest first',
    details: `Prints one version per line, "SEQNO<TAB>DATA" (or {"seqno", "bytes", "data"} with
--json), ascending. Reads ${PAGE} versions per call, so long histories stream in bounded memory;
each page is a consistent snapshot. Exits with 4 when the key has no data.

Options:
  --from SEQNO       first seqno to print (default: 0)
  --limit N          print at most N versions (default: all)`,
    options: { from: { type: 'string' }, limit: { type: 'string' } },
    positionals: ['KEY'],
    async run({ args, options, out, connect, globals }) {
      const key = args[0]!;
      let from = options['from'] === undefined ? 0n : parseSeqNo(options['from'] as string, '--from');
      let remaining = options['limit'] === undefined ? SEQNO_MAX : parseCount(options['limit'] as string, '--limit');
      const consensus = await connect();
      let printed = 0;
      while (remaining > 0n) {
        const page = await consensus.scan(key, from, remaining < BigInt(PAGE) ? remaining : PAGE);
        for (const version of page) await out.line(formatVersion(version, globals));
        printed += page.length;
        remaining -= BigInt(page.length);
        const last = page.at(-1)?.seqno;
        if (page.length < PAGE || last === undefined || last === SEQNO_MAX) break;
        from = last + 1n;
      }
      if (printed === 0 && (await consensus.head(key)) === null) throw missingKey(key);
    },
  },
  truncate: {
    usage: 'truncate KEY SEQNO [--yes]',
    summary: 'delete every version of a key below SEQNO',
    details: `Deletes every version with a seqno below SEQNO; the head is never deleted. SEQNO must
be at most the head. Asks for confirmation when stdin is a terminal; refuses to run without
--yes when it is not. Prints how many versions were deleted (or {"deleted": N} with --json).
Exits with 4 when the key has no data, 1 when SEQNO is above the head or the answer is not yes.

Options:
  -y, --yes          do not ask for confirmation`,
    options: { yes: { type: 'boolean', short: 'y' } },
    positionals: ['KEY', 'SEQNO'],
    async run({ args, options, out, connect, globals }) {
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
      await out.line(globals.json
        ? JSON.stringify({ key, seqno: seqno.toString(), deleted })
        : `deleted ${deleted} version${deleted === 1 ? '' : 's'} of key ${JSON.stringify(key)} below seqno ${seqno}`);
    },
  },
  stats: {
    usage: 'stats [--top N] [--progress]',
    summary: 'count keys, versions and payload bytes; largest histories',
    details: `Walks every key (listKeys, then scan in pages of ${PAGE}): it reads every payload once,
so on a large store it takes a while and moves that many bytes. Not a snapshot: writes made
during the walk may or may not be counted.

Options:
  --top N            how many of the largest histories to list (default: ${DEFAULT_TOP})
  --progress         report a running count on stderr every ${PROGRESS_EVERY} keys (on by
                     default when stderr is a terminal)`,
    options: { top: { type: 'string' }, progress: { type: 'boolean' } },
    positionals: [],
    async run({ options, out, connect, globals }) {
      const top = options['top'] === undefined ? DEFAULT_TOP : Number(parseCount(options['top'] as string, '--top', 10_000n));
      const consensus = await connect();
      const progress = new Progress(options['progress'] === true, 'keys');
      let keys = 0;
      let versions = 0;
      let payloadBytes = 0;
      let largest: KeyStats[] = [];
      const count = async (batch: string[]): Promise<void> => {
        for (const stats of await Promise.all(batch.map((key) => keyStats(consensus, key)))) {
          keys++;
          versions += stats.versions;
          payloadBytes += stats.bytes;
          if (top > 0) {
            largest.push(stats);
            if (largest.length > top * 2) largest = largestFirst(largest).slice(0, top);
          }
          progress.update(keys);
        }
      };
      // Several keys at once: one round trip per key in turn would leave Redis idle most of the time.
      let batch: string[] = [];
      for await (const key of consensus.listKeys()) {
        batch.push(key);
        if (batch.length === STATS_IN_FLIGHT) {
          await count(batch);
          batch = [];
        }
      }
      await count(batch);
      progress.done(keys);
      largest = largestFirst(largest).slice(0, top);
      if (globals.json) {
        await out.line(JSON.stringify({ keys, versions, payloadBytes, largest }));
        return;
      }
      await out.line(`keys           ${keys}`);
      await out.line(`versions       ${versions}`);
      await out.line(`payload bytes  ${payloadBytes}`);
      if (largest.length === 0) return;
      await out.line('largest histories:');
      const width = Math.max(8, ...largest.map((stats) => String(stats.versions).length));
      const bytesWidth = Math.max(5, ...largest.map((stats) => String(stats.bytes).length));
      await out.line(`  ${'versions'.padStart(width)}  ${'bytes'.padStart(bytesWidth)}  key`);
      for (const stats of largest) {
        await out.line(`  ${String(stats.versions).padStart(width)}  ${String(stats.bytes).padStart(bytesWidth)}  ` +
          JSON.stringify(stats.key));
      }
    },
  },
  ping: {
    usage: 'ping',
    summary: 'check that Redis answers; print the round-trip time',
    details: 'Prints "PONG <ms> ms" (or {"ok": true, "ms": ...} with --json). Exits with 3 when\nRedis cannot be reached.',
    options: {},
    positionals: [],
    async run({ out, connect, globals }) {
      const consensus = await connect();
      const ms = await consensus.ping();
      await out.line(globals.json ? JSON.stringify({ ok: true, ms }) : `PONG ${ms.toFixed(3)} ms`);
    },
  },
  help: {
    usage: 'help [COMMAND]',
    summary: 'print help about a command',
    details: '',
    options: {},
    positionals: [],
    async run() {
      // Handled in main: it needs no connection.
    },
  },
};

/** One key's share of the store. */
interface KeyStats {
  key: string;
  versions: number;
  bytes: number;
}

async function keyStats(consensus: RedisConsensus, key: string): Promise<KeyStats> {
  const stats: KeyStats = { key, versions: 0, bytes: 0 };
  let from = 0n;
  for (;;) {
    const page = await consensus.scan(key, from, PAGE);
    stats.versions += page.length;
    for (const version of page) stats.bytes += version.data.length;
    const last = page.at(-1)?.seqno;
    if (page.length < PAGE || last === undefined || last === SEQNO_MAX) return stats;
    from = last + 1n;
  }
}

function largestFirst(list: KeyStats[]): KeyStats[] {
  return list.sort((a, b) => b.versions - a.versions || b.bytes - a.bytes || (a.key < b.key ? -1 : 1));
}

function missingKey(key: string): CliError {
  return new CliError(EXIT_MISSING_KEY, `no data under key ${JSON.stringify(key)}`);
}

function formatVersion(version: VersionedData, globals: Globals): string {
  const data = Buffer.from(version.data.buffer, version.data.byteOffset, version.data.byteLength)
    .toString(globals.encoding);
  if (globals.json) {
    return JSON.stringify({ seqno: version.seqno.toString(), bytes: version.data.byteLength, data });
  }
  return `${version.seqno}\t${data}`;
}

/** A seqno from the command line: decimal digits only, at most 2^63-1. */
function parseSeqNo(text: string, name: string): bigint {
  if (!/^\d+$/.test(text)) throw usageError(`${name} must be a seqno (decimal digits); got ${JSON.stringify(text)}`);
  const seqno = BigInt(text);
  if (seqno > SEQNO_MAX) throw usageError(`${name} must be at most ${SEQNO_MAX}; got ${text}`);
  return seqno;
}

/** A non-negative count from the command line, up to `max`. */
function parseCount(text: string, name: string, max: bigint = SEQNO_MAX): bigint {
  if (!/^\d+$/.test(text)) throw usageError(`${name} must be a non-negative integer; got ${JSON.stringify(text)}`);
  const count = BigInt(text);
  if (count > max) throw usageError(`${name} must be at most ${max}; got ${text}`);
  return count;
}

/** Writes lines to stdout, waiting when the pipe is full so a slow reader bounds memory. */
class Output {
  async line(text: string): Promise<void> {
    if (!process.stdout.write(`${text}\n`)) {
      await new Promise<void>((resolve) => process.stdout.once('drain', resolve));
    }
  }
}

/** A running count on stderr: rewritten in place on a terminal, one line each otherwise. */
class Progress {
  private readonly enabled: boolean;
  private readonly tty: boolean;

  constructor(requested: boolean, private readonly unit: string) {
    this.tty = process.stderr.isTTY === true;
    this.enabled = requested || this.tty;
  }

  update(count: number): void {
    if (!this.enabled || count % PROGRESS_EVERY !== 0) return;
    process.stderr.write(this.tty ? `\r${count} ${this.unit}` : `progress: ${count} ${this.unit}\n`);
  }

  done(count: number): void {
    if (!this.enabled) return;
    process.stderr.write(this.tty ? `\r${count} ${this.unit}\n` : `progress: ${count} ${this.unit}, done\n`);
  }
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

/** Connects to Redis (or a Cluster) with a client of the library's own, which `close()` quits. */
async function connect(globals: Globals): Promise<RedisConsensus> {
  let url: URL;
  try {
    url = new URL(globals.url);
  } catch {
    throw usageError(`--url must be a redis:// or rediss:// URL; got ${JSON.stringify(globals.url)}`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw usageError(`--url must be a redis:// or rediss:// URL; got ${JSON.stringify(globals.url)}`);
  }
  const options = { prefix: globals.prefix, timeoutMs: globals.timeoutMs };
  // A command-line tool should fail fast when Redis is down instead of reconnecting forever.
  const retryStrategy = (attempt: number): number | null => (attempt > 3 ? null : 100 * attempt);
  try {
    if (!globals.cluster) {
      return await RedisConsensus.connect(globals.url, options, { connectTimeout: globals.timeoutMs, retryStrategy });
    }
    // Startup nodes carry no credentials: they go to every node connection instead.
    return await RedisConsensus.connectCluster([{ host: url.hostname, port: Number(url.port || 6379) }], options, {
      clusterRetryStrategy: retryStrategy,
      redisOptions: {
        connectTimeout: globals.timeoutMs,
        username: decodeURIComponent(url.username) || undefined,
        password: decodeURIComponent(url.password) || undefined,
        tls: url.protocol === 'rediss:' ? {} : undefined,
      },
    });
  } catch (err) {
    if (!(err instanceof ExternalError)) throw err;
    const cause = err.cause instanceof Error ? err.cause.message : err.message;
    throw new CliError(EXIT_UNREACHABLE, `cannot reach Redis${globals.cluster ? ' Cluster' : ''} at ` +
      `${redactUrl(globals.url)}: ${cause}`);
  }
}

function readVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return manifest.version;
}

function helpText(name?: string): string {
  const command = name === undefined ? undefined : COMMANDS[name];
  if (command === undefined) {
    const width = Math.max(...Object.values(COMMANDS).map((c) => c.usage.length));
    const list = Object.values(COMMANDS).map((c) => `  ${c.usage.padEnd(width)}  ${c.summary}`).join('\n');
    return `Usage: redis-consensus [options] COMMAND [arguments]

Inspect and administer a redis-consensus store.

Commands:
${list}

${GLOBAL_HELP}`;
  }
  return `Usage: redis-consensus [options] ${command.usage}

${command.summary[0]!.toUpperCase()}${command.summary.slice(1)}.${command.details === '' ? '' : `\n\n${command.details}`}

${GLOBAL_HELP}`;
}

/** Parses the command line and runs one command; resolves to the exit code. */
async function main(argv: string[]): Promise<number> {
  const allOptions: Record<string, OptionSpec> = { ...GLOBAL_OPTIONS };
  for (const command of Object.values(COMMANDS)) Object.assign(allOptions, command.options);
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options: allOptions, allowPositionals: true, strict: true });
  } catch (err) {
    throw usageError(`${(err as Error).message}\nRun 'redis-consensus --help' for usage.`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const [name, ...args] = parsed.positionals;
  if (values['version'] === true) {
    process.stdout.write(`${readVersion()}\n`);
    return 0;
  }
  if (name === 'help') {
    if (args[0] !== undefined && COMMANDS[args[0]] === undefined) throw unknownCommand(args[0]);
    process.stdout.write(`${helpText(args[0])}\n`);
    return 0;
  }
  if (name === undefined) {
    if (values['help'] === true) {
      process.stdout.write(`${helpText()}\n`);
      return 0;
    }
    throw usageError(`no command given\n\n${helpText()}`);
  }
  const command = COMMANDS[name];
  if (command === undefined) throw unknownCommand(name);
  if (values['help'] === true) {
    process.stdout.write(`${helpText(name)}\n`);
    return 0;
  }
  for (const option of Object.keys(values)) {
    if (!(option in GLOBAL_OPTIONS) && !(option in command.options)) {
      throw usageError(`--${option} is not an option of '${name}'\nUsage: redis-consensus ${command.usage}`);
    }
  }
  if (args.length !== command.positionals.length) {
    const expected = command.positionals.length === 0 ? 'no arguments' : command.positionals.join(' ');
    throw usageError(`'${name}' takes ${expected}; got ${args.length === 0 ? 'none' : args.map((a) => JSON.stringify(a)).join(' ')}` +
      `\nUsage: redis-consensus ${command.usage}`);
  }
  const globals = readGlobals(values);
  let opened: RedisConsensus | undefined;
  try {
    await command.run({
      globals, args, options: values, out: new Output(),
      async connect() {
        opened = await connect(globals);
        return opened;
      },
    });
  } finally {
    await opened?.close();
  }
  return 0;
}

function unknownCommand(name: string): CliError {
  return usageError(`unknown command ${JSON.stringify(name)}; commands: ${Object.keys(COMMANDS).join(', ')}`);
}

function readGlobals(values: Record<string, string | boolean | undefined>): Globals {
  const json = values['json'] === true;
  const encoding = (values['encoding'] as string | undefined) ?? (json ? 'base64' : 'utf8');
  if (!(ENCODINGS as readonly string[]).includes(encoding)) {
    throw usageError(`--encoding must be one of ${ENCODINGS.join(', ')}; got ${JSON.stringify(encoding)}`);
  }
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  if (values['timeout'] !== undefined) {
    timeoutMs = Number(parseCount(values['timeout'] as string, '--timeout', 3_600_000n));
    if (timeoutMs === 0) throw usageError('--timeout must be at least 1 ms');
  }
  let prefix: string;
  try {
    prefix = checkPrefix((values['prefix'] as string | undefined) ?? DEFAULT_PREFIX);
  } catch (err) {
    throw usageError(`--${(err as Error).message}`);
  }
  return {
    url: (values['url'] as string | undefined) ?? process.env['REDIS_URL'] ?? DEFAULT_URL,
    prefix,
    cluster: values['cluster'] === true,
    json,
    encoding: encoding as Encoding,
    timeoutMs,
  };
}

/** Maps a failure to its message and exit code. */
function failure(err: unknown): { message: string; code: number } {
  if (err instanceof CliError) return { message: err.message, code: err.exitCode };
  if (err instanceof ExternalError) return { message: `Redis failed: ${err.message}`, code: EXIT_UNREACHABLE };
  if (err instanceof RangeError || err instanceof TypeError) return { message: err.message, code: EXIT_USAGE };
  return { message: err instanceof Error ? err.stack ?? err.message : String(err), code: EXIT_FAILED };
}

process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  // The reader went away (`redis-consensus keys | head`): that is not a failure.
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

/**
 * Exits once stdout and stderr are flushed: writes to a pipe are asynchronous, and exiting at
 * once would cut the output short (seen with a Node parent reading the pipe).
 */
function exit(code: number): void {
  let pending = 2;
  const done = (): void => {
    if (--pending === 0) process.exit(code);
  };
  process.stdout.write('', done);
  process.stderr.write('', done);
}

main(process.argv.slice(2)).then(exit, (err: unknown) => {
  const { message, code } = failure(err);
  process.stderr.write(`redis-consensus: ${message}\n`);
  exit(code);
});
