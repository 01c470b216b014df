#!/usr/bin/env node
/**
 * `redis-consensus`: inspect and administer a store from a shell. This is the package's `bin`:
 * it checks the command line, connects, runs one command, and turns failures into exit codes.
 */
import { redactUrl } from '../client.js';
import { RedisConsensus } from '../consensus.js';
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
  // The files given (any of them means TLS, whatever the URL's scheme), else rediss://'s defaults.
  const tls = globals.tls ?? (url.protocol === 'rediss:' ? {} : undefined);
  // A command-line tool should fail fast when Redis is down instead of reconnecting forever.
  const retryStrategy = (attempt: number): number | null => (attempt > 3 ? null : 100 * attempt);
  try {
    if (!globals.cluster) {
      return await RedisConsensus.connect(globals.url, options, { connectTimeout: globals.timeoutMs, retryStrategy, tls });
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
    const cause = err.cause instanceof Error ? err.cause.message : err.message;
    throw new CliError(EXIT_UNREACHABLE, `cannot reach Redis${globals.cluster ? ' Cluster' : ''} at ` +
      `${redactUrl(globals.url)}: ${cause}`);
  }
}

/** Maps a failure to its message and exit code. */
function failure(err: unknown): { message: string; code: number } {
  if (err instanceof CliError) return { message: err.message, code: err.exitCode };
  if (err instanceof ExternalError && err.code === 'store-reset') {
    return { message: `the store was reset: ${err.message}`, code: EXIT_STORE_RESET };
  }
  // watch --from: versions it owed were truncated; Redis did not fail.
  if (err instanceof ExternalError && err.code === 'truncated') return { message: err.message, code: EXIT_FAILED };
  if (err instanceof ExternalError) return { message: `Redis failed: ${err.message}`, code: EXIT_UNREACHABLE };
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
