/**
 * The command line: global options, exit codes, help text, and every check of the arguments
 * that can be made before connecting, so a typo never reaches Redis.
 */
import { readFileSync } from 'node:fs';
// util.parseArgs: Node's own, well-kept argument parser (Node >= 18.3), so the command adds no
// runtime dependency beyond ioredis.
import { parseArgs } from 'node:util';
import { checkPrefix } from '../arguments.js';
import { DEFAULT_URL } from '../client.js';
import { DEFAULT_PREFIX } from '../layout.js';
import { DEFAULT_TIMEOUT_MS } from '../options.js';
import { SEQNO_MAX } from '../seqno.js';
import { ENCODINGS } from './output.js';
import type { Encoding, Format } from './output.js';

export const EXIT_DONE = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNREACHABLE = 3;
export const EXIT_MISSING_KEY = 4;
export const EXIT_STORE_RESET = 5;

/** A failure with the exit code it stands for; its message is printed as is. */
export class CliError extends Error {
  constructor(readonly exitCode: number, message: string) {
    super(message);
  }
}

export const usageError = (message: string): CliError => new CliError(EXIT_USAGE, message);

export type OptionSpec = { type: 'string' | 'boolean'; short?: string };
export type OptionValues = Record<string, string | boolean | undefined>;

/** What the command line needs to know of a command. */
export interface CommandSpec {
  readonly usage: string;
  readonly summary: string;
  readonly details: string;
  readonly options: Record<string, OptionSpec>;
  /** Names of the positional arguments, all required. */
  readonly positionals: readonly string[];
}

const GLOBAL_OPTIONS = {
  url: { type: 'string' },
  prefix: { type: 'string' },
  cluster: { type: 'boolean' },
  json: { type: 'boolean' },
  encoding: { type: 'string' },
  timeout: { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
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
  --tls-ca FILE      CA certificate(s) to verify the server with, PEM (default: $REDIS_TLS_CA)
  --tls-cert FILE    client certificate, PEM, with --tls-key (default: $REDIS_TLS_CERT)
  --tls-key FILE     the client certificate's private key, PEM (default: $REDIS_TLS_KEY)
                     Any --tls-* option connects with TLS, also with a redis:// URL
  -h, --help         help (also: redis-consensus help COMMAND)
  --version          the package version

Exit codes: 0 done, 1 failed or not confirmed, 2 bad arguments, 3 Redis unreachable or
failing, 4 no such key, 5 the store was reset under its users (see ack-reset).`;

/** `help` needs no connection, so it is answered here rather than run as a command. */
const HELP_COMMAND: CommandSpec = {
  usage: 'help [COMMAND]',
  summary: 'print help about a command',
  details: '',
  options: {},
  positionals: [],
};

/** What `--tls-*` (or their environment variables) name: the files' contents, for ioredis's `tls`. */
export interface TlsFiles {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

/** The parsed global settings every command gets. */
export interface Globals extends Format {
  readonly url: string;
  readonly prefix: string;
  readonly cluster: boolean;
  readonly timeoutMs: number;
  /** TLS files to connect with; undefined when no `--tls-*` option or variable is set. */
  readonly tls: TlsFiles | undefined;
}

/** What the command line asks for: text to print (help, version), or a command to run. */
export type Invocation<C extends CommandSpec> =
  | { readonly kind: 'print'; readonly text: string }
  | {
    readonly kind: 'run';
    readonly command: C;
    readonly args: string[];
    readonly options: OptionValues;
    readonly globals: Globals;
  };

/** Checks the command line against `commands`; throws a usage CliError when it is wrong. */
export function parseCommandLine<C extends CommandSpec>(
  argv: string[], commands: Readonly<Record<string, C>>,
): Invocation<C> {
  const listed: Record<string, CommandSpec> = { ...commands, help: HELP_COMMAND };
  const allOptions: Record<string, OptionSpec> = { ...GLOBAL_OPTIONS };
  for (const command of Object.values(listed)) Object.assign(allOptions, command.options);
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options: allOptions, allowPositionals: true, strict: true });
  } catch (err) {
    throw usageError(`${(err as Error).message}\nRun 'redis-consensus --help' for usage.`);
  }
  const options = parsed.values as OptionValues;
  const [name, ...args] = parsed.positionals;
  if (options['version'] === true) return { kind: 'print', text: readVersion() };
  if (name === 'help') {
    if (args[0] !== undefined && !Object.hasOwn(listed, args[0])) throw unknownCommand(args[0], listed);
    return { kind: 'print', text: helpText(listed, args[0]) };
  }
  if (name === undefined) {
    if (options['help'] === true) return { kind: 'print', text: helpText(listed) };
    throw usageError(`no command given\n\n${helpText(listed)}`);
  }
  // Own properties only: `toString` is no command.
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (command === undefined) throw unknownCommand(name, listed);
  if (options['help'] === true) return { kind: 'print', text: helpText(listed, name) };
  for (const option of Object.keys(options)) {
    if (!(option in GLOBAL_OPTIONS) && !(option in command.options)) {
      throw usageError(`--${option} is not an option of '${name}'\nUsage: redis-consensus ${command.usage}`);
    }
  }
  if (args.length !== command.positionals.length) {
    const expected = command.positionals.length === 0 ? 'no arguments' : command.positionals.join(' ');
    throw usageError(`'${name}' takes ${expected}; got ${args.length === 0 ? 'none' : args.map((a) => JSON.stringify(a)).join(' ')}` +
      `\nUsage: redis-consensus ${command.usage}`);
  }
  return { kind: 'run', command, args, options, globals: readGlobals(options) };
}

/** A seqno from the command line: decimal digits only, at most 2^63-1. */
export function parseSeqNo(text: string, name: string): bigint {
  if (!/^\d+$/.test(text)) throw usageError(`${name} must be a seqno (decimal digits); got ${JSON.stringify(text)}`);
  const seqno = BigInt(text);
  if (seqno > SEQNO_MAX) throw usageError(`${name} must be at most ${SEQNO_MAX}; got ${text}`);
  return seqno;
}

/** A non-negative count from the command line, up to `max`. */
export function parseCount(text: string, name: string, max: bigint = SEQNO_MAX): bigint {
  if (!/^\d+$/.test(text)) throw usageError(`${name} must be a non-negative integer; got ${JSON.stringify(text)}`);
  const count = BigInt(text);
  if (count > max) throw usageError(`${name} must be at most ${max}; got ${text}`);
  return count;
}

function readGlobals(options: OptionValues): Globals {
  const json = options['json'] === true;
  const encoding = (options['encoding'] as string | undefined) ?? (json ? 'base64' : 'utf8');
  if (!(ENCODINGS as readonly string[]).includes(encoding)) {
    throw usageError(`--encoding must be one of ${ENCODINGS.join(', ')}; got ${JSON.stringify(encoding)}`);
  }
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  if (options['timeout'] !== undefined) {
    timeoutMs = Number(parseCount(options['timeout'] as string, '--timeout', 3_600_000n));
    if (timeoutMs === 0) throw usageError('--timeout must be at least 1 ms');
  }
  let prefix: string;
  try {
    prefix = checkPrefix((options['prefix'] as string | undefined) ?? DEFAULT_PREFIX);
  } catch (err) {
    throw usageError(`--${(err as Error).message}`);
  }
  return {
    url: (options['url'] as string | undefined) ?? process.env['REDIS_URL'] ?? DEFAULT_URL,
    prefix,
    cluster: options['cluster'] === true,
    json,
    encoding: encoding as Encoding,
    timeoutMs,
    tls: readTlsFiles(options),
  };
}

/** Each `--tls-*` option and the environment variable it falls back to. */
const TLS_FILES = [['ca', 'tls-ca', 'REDIS_TLS_CA'], ['cert', 'tls-cert', 'REDIS_TLS_CERT'], ['key', 'tls-key', 'REDIS_TLS_KEY']] as const;

/** Reads the files `--tls-*` name (or their variables), before connecting: a bad path is a usage error. */
function readTlsFiles(options: OptionValues): TlsFiles | undefined {
  const files: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  const named: string[] = [];
  for (const [field, option, variable] of TLS_FILES) {
    const fromOption = options[option] as string | undefined;
    // An empty variable is an unset one (`REDIS_TLS_CA= redis-consensus ...`).
    const path = fromOption ?? (process.env[variable] || undefined);
    if (path === undefined) continue;
    const source = fromOption === undefined ? `$${variable}` : `--${option}`;
    named.push(source);
    try {
      files[field] = readFileSync(path);
    } catch (err) {
      throw usageError(`${source}: cannot read ${JSON.stringify(path)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw usageError(`a client certificate needs both --tls-cert and --tls-key (or $REDIS_TLS_CERT and $REDIS_TLS_KEY); got ${named.join(', ')}`);
  }
  return named.length === 0 ? undefined : files;
}

function unknownCommand(name: string, listed: Record<string, CommandSpec>): CliError {
  return usageError(`unknown command ${JSON.stringify(name)}; commands: ${Object.keys(listed).join(', ')}`);
}

function readVersion(): string {
  // From dist/lib/cli/ (or build/lib/cli/) up to the package root.
  const manifest = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return manifest.version;
}

function helpText(listed: Record<string, CommandSpec>, name?: string): string {
  const command = name === undefined ? undefined : listed[name];
  if (command === undefined) {
    const width = Math.max(...Object.values(listed).map((c) => c.usage.length));
    const list = Object.values(listed).map((c) => `  ${c.usage.padEnd(width)}  ${c.summary}`).join('\n');
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
