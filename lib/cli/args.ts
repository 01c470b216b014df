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

/** Every exit code and what it means, for the help (docs/cli.md has the same table; spec/docs.test.ts compares). */
export const EXIT_CODES: ReadonlyArray<readonly [number, string]> = [
  [EXIT_DONE, 'done'],
  [EXIT_FAILED, 'failed (e.g. truncate above the head), or the answer to a confirmation was not yes'],
  [EXIT_USAGE, 'bad arguments, or a confirmation needed and stdin is not a terminal (--yes missing); nothing was sent'],
  [EXIT_UNREACHABLE, 'Redis unreachable, refusing or failing'],
  [EXIT_MISSING_KEY, 'no such key (head, scan, truncate of a key with no data)'],
  [EXIT_STORE_RESET, 'the store was reset under its users (see ack-reset)'],
];

/** A failure with the exit code it stands for; its message is printed as is. */
export class CliError extends Error {
  constructor(readonly exitCode: number, message: string) {
    super(message);
  }
}

export const usageError = (message: string): CliError => new CliError(EXIT_USAGE, message);

/**
 * One option of the command line. Adding a global option is one entry in GLOBAL_OPTIONS; a
 * command's option, one entry in its `options`: the help is written from these entries.
 */
export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  /** The value's name in the help (`--from SEQNO`). */
  readonly arg?: string;
  /** Its line(s) in the help; without it, the option is described in the command's details. */
  readonly help?: string;
  /** This is another name of that option (redis-cli's, or an older one); its value goes there. */
  readonly aliasOf?: string;
}
export type OptionValues = Record<string, string | boolean | undefined>;

/** What the command line needs to know of a command. */
export interface CommandSpec {
  readonly usage: string;
  readonly summary: string;
  readonly details: string;
  readonly options: Readonly<Record<string, OptionSpec>>;
  /** Names of the positional arguments, all required. */
  readonly positionals: readonly string[];
}

const GLOBAL_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  url: {
    type: 'string', short: 'u', arg: 'URL',
    help: `Redis to use (default: $REDIS_URL, else ${DEFAULT_URL}); rediss:// for TLS`,
  },
  user: { type: 'string', arg: 'USERNAME', help: 'ACL user name (overrides the URL\'s)' },
  pass: { type: 'string', short: 'a', arg: 'PASSWORD', help: 'password (default: $REDISCLI_AUTH; overrides the URL\'s)' },
  db: { type: 'string', short: 'n', arg: 'DB', help: 'database number (default: the URL\'s /DB, else 0)' },
  prefix: { type: 'string', arg: 'PREFIX', help: `the store's key prefix (default: '${DEFAULT_PREFIX}', as the library)` },
  cluster: { type: 'boolean', help: 'connect to a Redis Cluster, with the URL\'s host:port as the startup node' },
  json: { type: 'boolean', help: 'machine output: one JSON object per line; seqnos as strings' },
  encoding: { type: 'string', arg: 'ENC', help: 'how payloads are printed: utf8, hex or base64 (default: utf8, or base64 with --json)' },
  timeout: { type: 'string', arg: 'MS', help: `deadline of each Redis call, in ms (default: ${DEFAULT_TIMEOUT_MS})` },
  tls: { type: 'boolean', help: 'connect with TLS, also with a redis:// URL (so do rediss:// and --cacert, --cert, --key)' },
  cacert: { type: 'string', arg: 'FILE', help: 'CA certificate(s) to verify the server with, PEM (default: $REDIS_TLS_CA)' },
  cert: { type: 'string', arg: 'FILE', help: 'client certificate, PEM, with --key (default: $REDIS_TLS_CERT)' },
  key: { type: 'string', arg: 'FILE', help: 'the client certificate\'s private key, PEM (default: $REDIS_TLS_KEY)' },
  'tls-ca': { type: 'string', aliasOf: 'cacert' },
  'tls-cert': { type: 'string', aliasOf: 'cert' },
  'tls-key': { type: 'string', aliasOf: 'key' },
  help: { type: 'boolean', short: 'h', help: 'help (also: redis-consensus help COMMAND); not redis-cli\'s -h HOST: use -u URL' },
  version: { type: 'boolean', help: 'the package version' },
};

/** `help` needs no connection, so it is answered here rather than run as a command. */
const HELP_COMMAND: CommandSpec = {
  usage: 'help [COMMAND]',
  summary: 'print help about a command',
  details: '',
  options: {},
  positionals: [],
};

/** What --cacert, --cert, --key (or their environment variables) name: the files' contents, for ioredis's `tls`. */
export interface TlsFiles {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

/** The parsed global settings every command gets. */
export interface Globals extends Format {
  readonly url: string;
  /** From --user / -a (or $REDISCLI_AUTH); they override the URL's. */
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** From -n; overrides the URL's /DB. */
  readonly db: number | undefined;
  readonly prefix: string;
  readonly cluster: boolean;
  readonly timeoutMs: number;
  /** TLS files to connect with (`{}`: TLS with the system's CAs); undefined: no TLS asked for beyond the URL's scheme. */
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
    parsed = parseArgs({
      args: escapeNegativeNumbers(argv, allOptions),
      options: Object.fromEntries(Object.entries(allOptions).map(([name, { type, short }]) =>
        [name, short === undefined ? { type } : { type, short }])),
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw usageError(`${plainParseError(err as NodeJS.ErrnoException, allOptions)}\nRun 'redis-consensus --help' for usage.`);
  }
  const options = resolveAliases(parsed.values as OptionValues, allOptions);
  const [name, ...args] = parsed.positionals.map(unescapeNegativeNumber);
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

/** Marks a negative number given as a positional argument, which parseArgs would take for an option. */
const NEGATIVE = '\u0000';

/**
 * `--from -1` and `truncate KEY -1`: parseArgs reads `-1` as an unknown option and says so in its
 * own terms. A negative number after an option that takes a value becomes that value
 * (`--from=-1`), and one elsewhere a positional, so that the checks below can say what is wrong.
 */
function escapeNegativeNumbers(argv: string[], options: Record<string, OptionSpec>): string[] {
  const takesValue = (token: string): boolean => {
    const long = /^--([^=]+)$/.exec(token)?.[1];
    if (long !== undefined) return options[long]?.type === 'string';
    const short = /^-([a-zA-Z])$/.exec(token)?.[1];
    return short !== undefined && Object.values(options).some((spec) => spec.short === short && spec.type === 'string');
  };
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    const next = argv[i + 1];
    if (token === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if (takesValue(token) && next !== undefined && /^-\d/.test(next)) {
      out.push(`${token.startsWith('--') ? token : `--${longName(token, options)}`}=${next}`);
      i++;
    } else {
      out.push(/^-\d/.test(token) ? NEGATIVE + token : token);
    }
  }
  return out;
}

const unescapeNegativeNumber = (arg: string): string => (arg.startsWith(NEGATIVE) ? arg.slice(1) : arg);

function longName(token: string, options: Record<string, OptionSpec>): string {
  return Object.entries(options).find(([, spec]) => `-${spec.short}` === token)?.[0] ?? token.slice(1);
}

/** parseArgs's errors, without its advice about `--` and positionals. */
function plainParseError(err: NodeJS.ErrnoException, options: Record<string, OptionSpec>): string {
  const option = /'(-[^' ]*)/.exec(err.message)?.[1];
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option !== undefined) return `unknown option ${option}`;
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option !== undefined) {
    const name = option.startsWith('--') ? option.slice(2) : longName(option, options);
    const spec = options[name];
    return spec?.type === 'string' ? `${option} needs a value (${option} ${spec.arg ?? 'VALUE'})` : `${option} takes no value`;
  }
  return err.message;
}

/** How the user spelled an option given by an alias, so that messages name what was typed. */
const SPELLED = new WeakMap<OptionValues, Record<string, string>>();
const spelled = (options: OptionValues, name: string): string => `--${SPELLED.get(options)?.[name] ?? name}`;

/** Moves each alias's value to the option it names; both given is a usage error. */
function resolveAliases(values: OptionValues, options: Record<string, OptionSpec>): OptionValues {
  const resolved: OptionValues = { ...values };
  const as: Record<string, string> = {};
  for (const [name, spec] of Object.entries(options)) {
    if (spec.aliasOf === undefined || resolved[name] === undefined) continue;
    if (resolved[spec.aliasOf] !== undefined) throw usageError(`--${name} and --${spec.aliasOf} are the same option: give one`);
    resolved[spec.aliasOf] = resolved[name];
    as[spec.aliasOf] = name;
    delete resolved[name];
  }
  SPELLED.set(resolved, as);
  return resolved;
}

/** A seqno from the command line: decimal digits only, at most 2^63-1. */
export function parseSeqNo(text: string, name: string): bigint {
  if (!/^\d+$/.test(text)) {
    throw usageError(`${name} must be a seqno, a whole number from 0 to ${SEQNO_MAX}; got ${JSON.stringify(text)}`);
  }
  const seqno = BigInt(text);
  if (seqno > SEQNO_MAX) throw usageError(`${name} must be at most ${SEQNO_MAX}; got ${text}`);
  return seqno;
}

/** A count from the command line, from `min` up to `max`. */
export function parseCount(text: string, name: string, max: bigint = SEQNO_MAX, min = 0n, unit = ''): bigint {
  const range = `a whole number${unit} from ${min} to ${max}`;
  if (!/^\d+$/.test(text)) throw usageError(`${name} must be ${range}; got ${JSON.stringify(text)}`);
  const count = BigInt(text);
  if (count < min || count > max) throw usageError(`${name} must be ${range}; got ${text}`);
  return count;
}

function readGlobals(options: OptionValues): Globals {
  const json = options['json'] === true;
  const encoding = (options['encoding'] as string | undefined) ?? (json ? 'base64' : 'utf8');
  if (!(ENCODINGS as readonly string[]).includes(encoding)) {
    throw usageError(`--encoding must be one of ${ENCODINGS.join(', ')}; got ${JSON.stringify(encoding)}`);
  }
  const timeoutMs = options['timeout'] === undefined
    ? DEFAULT_TIMEOUT_MS
    : Number(parseCount(options['timeout'] as string, '--timeout', 3_600_000n, 1n, ' of milliseconds'));
  let prefix: string;
  try {
    prefix = checkPrefix((options['prefix'] as string | undefined) ?? DEFAULT_PREFIX);
  } catch (err) {
    throw usageError(`--${(err as Error).message}`);
  }
  const cluster = options['cluster'] === true;
  const db = options['db'] === undefined ? undefined : Number(parseCount(options['db'] as string, '-n/--db', 1_000_000n));
  if (cluster && db !== undefined && db !== 0) throw usageError('-n/--db: a Redis Cluster has only database 0');
  return {
    url: (options['url'] as string | undefined) ?? process.env['REDIS_URL'] ?? DEFAULT_URL,
    username: options['user'] as string | undefined,
    // An empty variable is an unset one, as redis-cli reads it.
    password: (options['pass'] as string | undefined) ?? (process.env['REDISCLI_AUTH'] || undefined),
    db,
    prefix,
    cluster,
    json,
    encoding: encoding as Encoding,
    timeoutMs,
    tls: readTlsFiles(options) ?? (options['tls'] === true ? {} : undefined),
  };
}

/** Each TLS file option and the environment variable it falls back to. */
const TLS_FILES = [['ca', 'cacert', 'REDIS_TLS_CA'], ['cert', 'cert', 'REDIS_TLS_CERT'], ['key', 'key', 'REDIS_TLS_KEY']] as const;

/** Reads the files --cacert, --cert and --key name (or their variables), before connecting: a bad path is a usage error. */
function readTlsFiles(options: OptionValues): TlsFiles | undefined {
  const files: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  const named: string[] = [];
  for (const [field, option, variable] of TLS_FILES) {
    const fromOption = options[option] as string | undefined;
    // An empty variable is an unset one (`REDIS_TLS_CA= redis-consensus ...`).
    const path = fromOption ?? (process.env[variable] || undefined);
    if (path === undefined) continue;
    const source = fromOption === undefined ? `$${variable}` : spelled(options, option);
    named.push(source);
    try {
      files[field] = readFileSync(path);
    } catch (err) {
      throw usageError(`${source}: cannot read ${JSON.stringify(path)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw usageError(`a client certificate needs both --cert and --key (or $REDIS_TLS_CERT and $REDIS_TLS_KEY); got ${named.join(', ')}`);
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

/** Help lines for `options`: `  -u, --url URL      what it is`, aliases named on their target's line. */
function optionLines(options: Readonly<Record<string, OptionSpec>>): string[] {
  const entries = Object.entries(options).filter(([, spec]) => spec.help !== undefined);
  const left = (name: string, spec: OptionSpec): string =>
    `${spec.short === undefined ? '    ' : `-${spec.short}, `}--${name}${spec.arg === undefined ? '' : ` ${spec.arg}`}`;
  const width = Math.max(...entries.map(([name, spec]) => left(name, spec).length));
  return entries.map(([name, spec]) => {
    const aliases = Object.entries(options).filter(([, other]) => other.aliasOf === name).map(([alias]) => `--${alias}`);
    const help = `${spec.help!}${aliases.length === 0 ? '' : `; also ${aliases.join(', ')}`}`;
    return `  ${left(name, spec).padEnd(width)}  ${help}`;
  });
}

function globalHelp(): string {
  return `Global options (redis-cli's -u, -a, -n, --user, --tls, --cacert, --cert, --key; -h is help):
${optionLines(GLOBAL_OPTIONS).join('\n')}

Exit codes:
${EXIT_CODES.map(([code, meaning]) => `  ${code}  ${meaning}`).join('\n')}`;
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

${globalHelp()}`;
  }
  const own = optionLines(command.options);
  return `Usage: redis-consensus [options] ${command.usage}

${command.summary[0]!.toUpperCase()}${command.summary.slice(1)}.${command.details === '' ? '' : `\n\n${command.details}`}${
  own.length === 0 ? '' : `\n\nOptions:\n${own.join('\n')}`}

${globalHelp()}`;
}
