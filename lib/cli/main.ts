#!/usr/bin/env node
/**
 * `redis-consensus`: inspect and administer a store from a shell. This is the package's `bin`:
 * it checks the command line, connects, runs one command, and turns failures into exit codes.
 */
import { redactUrl } from '../client.js';
// Types only: the library (and ioredis with it, most of the start-up time) is loaded when a
// command connects, so --help, --version and bad arguments answer without loading it.
import type { RedisConsensus } from '../consensus.js';
import { ExternalError } from '../errors.js';
import {
  CliError, EXIT_DONE, EXIT_FAILED, EXIT_STORE_RESET, EXIT_UNREACHABLE, EXIT_USAGE, parseCommandLine, usageError,
} from './args.js';
import type { Globals } from './args.js';
import { COMMANDS } from './commands.js';
import { Output } from './output.js';

/** Parses the command line and runs one command; resolves to the exit code. */
async function main(argv: string[]): Promise<number> {
  const invocation = parseCommandLine(argv, COMMANDS);
  if (invocation.kind === 'print') {
    process.stdout.write(`${invocation.text}\n`);
    return EXIT_DONE;
  }
  const { command, args, options, globals } = invocation;
  let opened: RedisConsensus | undefined;
  try {
    await command.run({
      globals, args, options, out: new Output(),
      async connect() {
        opened = await connect(globals);
        return opened;
      },
    });
  } finally {
    await opened?.close();
  }
  return EXIT_DONE;
}

/** Connects to Redis (or a Cluster) with a client of the library's own, which `close()` quits. */
async function connect(globals: Globals): Promise<RedisConsensus> {
  // An empty REDIS_URL is a mistake, not a wish for localhost.
  if (globals.url === '') throw usageError('--url (or $REDIS_URL) is empty; give a redis:// or rediss:// URL');
  // No message shows the URL as given: it may hold a password.
  let url: URL;
  try {
    url = new URL(globals.url);
  } catch {
    throw usageError('--url must be a redis:// or rediss:// URL; got one that cannot be parsed (not shown: it may hold a password)');
  }
  // `redis:pass@host` (no `//`) has no host: ioredis would read it as a user named `redis`.
  if ((url.protocol !== 'redis:' && url.protocol !== 'rediss:') || url.host === '') {
    throw usageError(`--url must be a redis:// or rediss:// URL; got ${JSON.stringify(redactUrl(globals.url))}`);
  }
  try {
    decodeURIComponent(url.username);
    decodeURIComponent(url.password);
  } catch {
    throw usageError("--url: the username or password is not valid percent-encoding (a '%' must start %XX; write '%' as %25)");
  }
  // -a/--user/-n override the URL's: written into it, since ioredis lets a URL's settings win over options.
  if (globals.username !== undefined) url.username = encodeURIComponent(globals.username);
  if (globals.password !== undefined) url.password = encodeURIComponent(globals.password);
  if (globals.db !== undefined) url.pathname = `/${globals.db}`;
  const { RedisConsensus } = await import('../consensus.js');
  const options = { prefix: globals.prefix, timeoutMs: globals.timeoutMs };
  // The files given or --tls (TLS whatever the URL's scheme), else rediss://'s defaults.
  const tls = globals.tls ?? (url.protocol === 'rediss:' ? {} : undefined);
  // A command-line tool should fail fast when Redis is down instead of reconnecting forever.
  const retryStrategy = (attempt: number): number | null => (attempt > 3 ? null : 100 * attempt);
  try {
    if (!globals.cluster) {
      return await RedisConsensus.connect(url.href, options, { connectTimeout: globals.timeoutMs, retryStrategy, tls });
    }
    // Startup nodes carry no credentials: they go to every node connection instead.
    return await RedisConsensus.connectCluster([{ host: url.hostname, port: Number(url.port || 6379) }], options, {
      clusterRetryStrategy: retryStrategy,
      redisOptions: {
        connectTimeout: globals.timeoutMs,
        username: decodeURIComponent(url.username) || undefined,
        password: decodeURIComponent(url.password) || undefined,
        tls,
      },
    });
  } catch (err) {
    if (!(err instanceof ExternalError)) throw err;
    throw new CliError(EXIT_UNREACHABLE, `cannot reach Redis${globals.cluster ? ' Cluster' : ''} at ` +
      `${redactUrl(globals.url)}: ${explainConnectFailure(err, globals)}`);
  }
}

/**
 * Why connecting failed, in a user's words: the usual causes named with what to do, anything
 * else as the underlying error's message without the URL (already said) and the library's
 * `determinate:` (always so at connect).
 */
function explainConnectFailure(err: ExternalError, globals: Globals): string {
  const cause = err.cause as (Error & { code?: string; lastNodeError?: Error }) | undefined;
  const detail = cause?.lastNodeError?.message ?? cause?.message ?? err.message;
  const text = `${detail} ${cause?.code ?? ''} ${err.message}`;
  if (/ECONNREFUSED/.test(text)) return 'connection refused: nothing listens there (is Redis running, on that port?)';
  if (/ENOTFOUND|EAI_AGAIN/.test(text)) return 'no such host';
  if (/Protocol error|reply type byte/i.test(text)) return 'the service there does not speak the Redis protocol (is it Redis, on the right port?)';
  if (/cluster support disabled/i.test(text)) return 'it is a standalone server, not a Redis Cluster: leave out --cluster';
  if (/NOAUTH/.test(text)) return 'Redis asks for a password: give -a PASSWORD (or $REDISCLI_AUTH, or redis://user:password@host)';
  if (/WRONGPASS|invalid password/i.test(text)) return 'wrong user name or password';
  if (/DB index is out of range/i.test(text)) return `the server has no database ${globals.db ?? 'with that number'}`;
  if (/alert certificate required/i.test(text)) return 'the server requires a client certificate: give --cert and --key';
  // TLS 1.3: the server may close the socket before its alert is read (a reset instead of the alert).
  if (/ECONNRESET|EPIPE|socket disconnected|socket hang up/i.test(text) && (globals.tls !== undefined || globals.url.startsWith('rediss:'))) {
    return 'the server closed the TLS connection in the handshake: if it requires a client certificate, give --cert and --key';
  }
  if (/self[- ]signed|unable to verify|unable to get local issuer/i.test(text)) {
    return `the server's certificate is not signed by a CA we trust (--cacert): ${detail.replace(/^.*?:\s*/, '')}`;
  }
  if (/wrong version number|packet length too long|EPROTO/i.test(text)) return 'the TLS handshake failed: does the server speak TLS on that port?';
  if (err.code === 'timeout' || /ETIMEDOUT|no reply within|timed out/i.test(text)) {
    // A TLS client meeting a plain server waits for a handshake that never comes.
    const tls = globals.tls !== undefined || globals.url.startsWith('rediss:') ? '; TLS was asked for: does the server speak TLS on that port?' : '';
    return `no answer within ${globals.timeoutMs} ms (--timeout)${tls}`;
  }
  if (/Failed to refresh slots cache/i.test(text)) return 'no Cluster node answered';
  const url = redactUrl(globals.url);
  return detail.replace(/^(in)?determinate: /, '').replaceAll(globals.url, url)
    .replace(new RegExp(`(could not connect to )?${url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:? ?`, 'g'), '').trim() || detail;
}

/** Maps a failure to its message and exit code. */
function failure(err: unknown): { message: string; code: number } {
  if (err instanceof CliError) return { message: err.message, code: err.exitCode };
  // The library's `determinate: ` prefix, in words: whether anything may have changed.
  const plain = (e: ExternalError): string => e.message.replace(/^(in)?determinate: /, '');
  if (err instanceof ExternalError && err.code === 'store-reset') {
    return { message: `the store was reset: ${plain(err)}`, code: EXIT_STORE_RESET };
  }
  if (err instanceof ExternalError && err.code === 'store-rollback') {
    return { message: `the store was rolled back: ${plain(err)}`, code: EXIT_STORE_RESET };
  }
  // watch --from: versions it owed were truncated; Redis did not fail.
  if (err instanceof ExternalError && err.code === 'truncated') return { message: plain(err), code: EXIT_FAILED };
  if (err instanceof ExternalError) {
    const changed = err.determinate ? 'nothing was changed' : 'the change may or may not have been made: check before retrying';
    return { message: `Redis failed (${changed}): ${plain(err)}`, code: EXIT_UNREACHABLE };
  }
  if (err instanceof RangeError || err instanceof TypeError) return { message: err.message, code: EXIT_USAGE };
  return { message: err instanceof Error ? err.stack ?? err.message : String(err), code: EXIT_FAILED };
}

process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  // The reader went away (`redis-consensus keys | head`): that is not a failure.
  if (err.code === 'EPIPE') process.exit(EXIT_DONE);
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
