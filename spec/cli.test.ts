/**
 * The `redis-consensus` command, end to end: the compiled CLI run as a child process against the
 * real Redis, on data written through the library under a fresh prefix.
 *
 * Most tests run the CLI compiled next to this spec (`build/lib/cli/main.js`: the same source
 * and compiler settings as `dist/lib/cli/main.js`, and the copy whose coverage `npm test`
 * measures); one runs the packaged binary itself, `dist/lib/cli/main.js` as named by
 * package.json's `bin`, which `npm test` builds before the specs. REDIS_CONSENSUS_BIN overrides
 * that path.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Cluster, Redis } from 'ioredis';
import { CaSResult, RedisConsensus, SEQNO_MAX } from '../lib/index.js';
import { deletePrefix, freshPrefix, REDIS_URL, realRedisAvailable } from './support/backends.js';
import { RedisServer } from './support/redis-server.js';

const CLI = fileURLToPath(new URL('../lib/cli/main.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MANIFEST = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  bin: Record<string, string>;
};
const BIN = process.env.REDIS_CONSENSUS_BIN ?? join(ROOT, MANIFEST.bin['redis-consensus']!);
/** Nothing listens here (this spec's own port range). */
const DEAD_URL = 'redis://127.0.0.1:7498';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `args`; stdin is a pipe fed `input` (so not a terminal). */
function cli(args: string[], options: { input?: string; env?: Record<string, string>; script?: string; killAfterMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [options.script ?? CLI, ...args], {
      env: { ...process.env, REDIS_URL, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    // A CLI that hangs is killed (code null) rather than hanging the suite.
    const killer = options.killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), options.killAfterMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

const lines = (text: string): string[] => text.split('\n').filter((line) => line !== '');
const json = (text: string): Array<Record<string, unknown>> =>
  lines(text).map((line) => JSON.parse(line) as Record<string, unknown>);

const BINARY = Buffer.from([0, 255, 1, 10, 13, 0x80]);
const BINARY_KEY = 'bin\nkey ü';

const test = suite('redis-consensus CLI');
const available = await realRedisAvailable();
let consensus: RedisConsensus;
let raw: Redis;
let prefix: string;
/** Runs the CLI on this suite's store. */
const run = (args: string[], options?: { input?: string; env?: Record<string, string> }): Promise<Run> =>
  cli(['--prefix', prefix, ...args], options);

test.before(async () => {
  if (!available) return;
  prefix = freshPrefix('cli');
  consensus = await RedisConsensus.connect(REDIS_URL, { prefix });
  raw = new Redis(REDIS_URL);
  for (let seqno = 0n; seqno < 5n; seqno++) {
    assert.is(await consensus.compareAndSet('alpha', seqno === 0n ? null : seqno - 1n,
      { seqno, data: Buffer.from(`v${seqno}`) }), CaSResult.Committed);
  }
  assert.is(await consensus.compareAndSet(BINARY_KEY, null, { seqno: SEQNO_MAX, data: BINARY }), CaSResult.Committed);
});

test.after(async () => {
  if (!available) return;
  await consensus.close();
  await deletePrefix(raw, prefix);
  await raw.quit();
});

/** Registers a test that needs the real Redis. */
const real = (name: string, body: () => Promise<void>): void => {
  test(name, async () => {
    if (!available) return;
    await body();
  });
};

test('--help, help COMMAND and COMMAND --help print help and exit 0, without Redis', async () => {
  const top = await cli(['--help'], { env: { REDIS_URL: DEAD_URL } });
  assert.is(top.code, 0);
  await Promise.all(['keys', 'head', 'scan', 'truncate', 'stats', 'watch', 'lease', 'ping', 'ack-reset'].map(async (command) => {
    assert.match(top.stdout, `  ${command}`);
    const [viaHelp, viaFlag] = await Promise.all([cli(['help', command]), cli([command, '--help'])]);
    assert.is(viaHelp.code, 0, command);
    assert.is(viaFlag.code, 0, command);
    assert.is(viaHelp.stdout, viaFlag.stdout);
    assert.match(viaHelp.stdout, `Usage: redis-consensus [options] ${command}`);
  }));
  assert.match((await cli(['help', 'scan'])).stdout, '--from SEQNO');
  assert.match((await cli(['help'])).stdout, /Exit codes:\n  0  done\n/);
  const version = await cli(['--version']);
  assert.is(version.code, 0);
  assert.match(version.stdout, /^\d+\.\d+\.\d+/);
});

test('bad arguments exit with 2 and say what is wrong, before connecting', async () => {
  const cases: Array<[string[], RegExp]> = [
    [[], /no command given/],
    [['bogus'], /unknown command "bogus"/],
    [['toString'], /unknown command "toString"/],
    [['help', 'constructor'], /unknown command "constructor"/],
    [['help', 'bogus'], /unknown command "bogus"/],
    [['head'], /'head' takes KEY; got none/],
    [['head', 'a', 'b'], /'head' takes KEY; got "a" "b"/],
    [['head', 'a', '--from', '1'], /--from is not an option of 'head'/],
    [['--nope', 'keys'], /unknown option --nope\n/],
    [['scan', 'a', '--from', 'x'], /--from must be a seqno/],
    [['scan', 'a', '--from', '9223372036854775808'], /--from must be at most 9223372036854775807/],
    [['scan', 'a', '--from', '-1'], /--from must be a seqno, a whole number from 0 to 9223372036854775807; got "-1"/],
    [['scan', 'a', '--limit', '1.5'], /--limit must be a whole number from 0/],
    [['scan', 'a', '--limit'], /--limit needs a value \(--limit N\)/],
    [['truncate', 'a', '-1', '--yes'], /SEQNO must be a seqno, a whole number from 0 .*; got "-1"/],
    [['truncate', 'a', 'ten', '--yes'], /SEQNO must be a seqno/],
    [['head', 'a', '--encoding', 'latin1'], /--encoding must be one of utf8, hex, base64/],
    [['head', 'a', '--timeout', '0'], /--timeout must be a whole number of milliseconds from 1 to 3600000; got 0/],
    [['head', 'a', '--timeout', 'abc'], /--timeout must be a whole number of milliseconds from 1 to 3600000; got "abc"/],
    [['head', 'a', '-n', 'x'], /-n\/--db must be a whole number/],
    [['head', 'a', '--cluster', '-n', '1'], /a Redis Cluster has only database 0/],
    [['head', 'a', '--yes'], /--yes is not an option of 'head'/],
    [['head', 'a', '--prefix', 'a{b}'], /--prefix must be non-empty/],
    [['head', 'a', '--url', 'http://localhost'], /--url must be a redis:\/\/ or rediss:\/\/ URL/],
    [['stats', '--top', 'many'], /--top must be a whole number/],
  ];
  const results = await Promise.all(cases.map(([args]) => cli(args, { env: { REDIS_URL: DEAD_URL } })));
  cases.forEach(([args, message], i) => {
    const result = results[i]!;
    assert.is(result.code, 2, args.join(' '));
    assert.match(result.stderr, message, args.join(' '));
    assert.is(result.stdout, '', args.join(' '));
    // One line, plus at most a pointer to the usage.
    assert.ok(lines(result.stderr).length <= 2 || args.length === 0, `${args.join(' ')}: ${result.stderr}`);
  });
});

test('an unreachable Redis exits with 3, from --url or REDIS_URL', async () => {
  const viaFlag = await cli(['--url', DEAD_URL, 'ping']);
  assert.is(viaFlag.code, 3);
  assert.match(viaFlag.stderr, 'cannot reach Redis at redis://127.0.0.1:7498');
  assert.is(viaFlag.stderr, 'redis-consensus: cannot reach Redis at redis://127.0.0.1:7498: ' +
    'connection refused: nothing listens there (is Redis running, on that port?)\n');
  const viaEnv = await cli(['keys'], { env: { REDIS_URL: DEAD_URL } });
  assert.is(viaEnv.code, 3);
  assert.match(viaEnv.stderr, 'connection refused');
  assert.is(viaEnv.stdout, '');
  const credentials = await cli(['--url', 'redis://user:secret@127.0.0.1:7498', 'ping']);
  assert.is(credentials.code, 3);
  assert.not.match(credentials.stderr, 'secret');
});

test('no path of the CLI shows the password of the URL: bad scheme, malformed, %zz, bad database, unreachable, wrong password', async () => {
  const secret = 'S3cr3t-pw-4f1b';
  const here = new URL(REDIS_URL);
  const cases: Array<[string, string[], Record<string, string>, number, RegExp]> = [
    ['bad scheme', ['--url', `http://:${secret}@127.0.0.1:7703`, 'ping'], {}, 2, /--url must be a redis:\/\/ or rediss:\/\/ URL; got "http:\/\/127\.0\.0\.1:7703"/],
    ['bad scheme in REDIS_URL', ['ping'], { REDIS_URL: `https://u:${secret}@127.0.0.1:7703/x?password=${secret}` }, 2, /--url must be a redis/],
    ['no host', ['--url', `redis:${secret}@127.0.0.1`, 'ping'], {}, 2, /.+/],
    ['malformed', ['--url', `redis://:${secret}@[::1`, 'ping'], {}, 2, /cannot be parsed \(not shown: it may hold a password\)/],
    ['%zz in the password', ['--url', `redis://:${secret}%zz@127.0.0.1:7703`, 'ping'], {}, 2, /not valid percent-encoding/],
    ['%zz in the password, --cluster', ['--cluster', '--url', `redis://u:${secret}%zz@127.0.0.1:7703`, 'ping'], {}, 2, /not valid percent-encoding/],
    ['a database that is no integer', ['--url', `redis://:${secret}@127.0.0.1:7703/?db=abc`, 'ping'], {}, 2, /database index/],
    ['unreachable', ['--url', `redis://user:${secret}@127.0.0.1:7703`, '--timeout', '500', 'ping'], {}, 3, /cannot reach Redis at redis:\/\/127\.0\.0\.1:7703/],
    ['an empty REDIS_URL', ['ping'], { REDIS_URL: '' }, 2, /--url \(or \$REDIS_URL\) is empty/],
    ['unreachable, password in the query', ['--url', `redis://127.0.0.1:7703/?password=${secret}`, '--timeout', '500', 'ping'], {}, 3, /cannot reach Redis/],
  ];
  if (available) {
    cases.push(['wrong password of an ACL user', ['--url', `redis://nobody-${process.pid}:${secret}@${here.host}`, 'ping'], {}, 3, /wrong user name or password/]);
  }
  const results = await Promise.all(cases.map(([, args, env]) => cli(args, { env, killAfterMs: 20_000 })));
  cases.forEach(([name, , , code, message], i) => {
    const result = results[i]!;
    assert.is(result.code, code, `${name}: ${result.stderr}`);
    assert.match(result.stderr, message, name);
    assert.not.match(`${result.stdout}${result.stderr}`, secret, name);
    assert.not.match(result.stderr, /\n\s+at /, `${name}: no stack trace`);
  });
});

test('ping --timeout 1000 against a server that accepts and never answers exits 3 within ~2 s', async () => {
  const sockets = new Set<Socket>();
  const hole = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
  });
  hole.listen(0, '127.0.0.1');
  await once(hole, 'listening');
  try {
    const { port } = hole.address() as AddressInfo;
    const started = Date.now();
    const run = await cli(['--url', `redis://127.0.0.1:${port}`, '--timeout', '1000', 'ping'], { killAfterMs: 10_000 });
    const ms = Date.now() - started;
    assert.is(run.code, 3, `exit ${run.code} after ${ms} ms: ${run.stderr}`);
    assert.match(run.stderr, 'no answer within 1000 ms');
    assert.ok(ms < 2500, `${ms} ms`);
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => hole.close(resolve));
  }
});

test('a service that is not Redis gets one line saying so, exit 3', async () => {
  // Like a web server: it answers what it cannot parse, and keeps the connection open.
  const http = createServer((socket) => {
    socket.on('error', () => {});
    socket.on('data', () => socket.write('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'));
  });
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  try {
    const { port } = http.address() as AddressInfo;
    const result = await cli(['-u', `redis://127.0.0.1:${port}`, '--timeout', '2000', 'ping'], { killAfterMs: 10_000 });
    assert.is(result.code, 3, result.stderr);
    assert.is(result.stderr, `redis-consensus: cannot reach Redis at redis://127.0.0.1:${port}: ` +
      'the service there does not speak the Redis protocol (is it Redis, on the right port?)\n');
  } finally {
    await new Promise((resolve) => http.close(resolve));
  }
});

real('a standalone server given --cluster gets one line saying so, exit 3', async () => {
  const result = await cli(['--cluster', '--timeout', '3000', 'ping'], { killAfterMs: 20_000 });
  assert.is(result.code, 3, result.stderr);
  assert.match(result.stderr, /^redis-consensus: cannot reach Redis Cluster at .*: it is a standalone server, not a Redis Cluster: leave out --cluster\n$/);
});

real("redis-cli's flags: -u, -a or REDISCLI_AUTH, --user, -n; a missing or wrong password says what to do", async () => {
  const server = await RedisServer.startInRange(7880, 7899);
  // Set once started: the helper's readiness check pings without a password.
  const admin = new Redis(server.port, '127.0.0.1');
  await admin.config('SET', 'requirepass', 'pw');
  admin.disconnect();
  const store = await RedisConsensus.connect(`redis://:pw@127.0.0.1:${server.port}/3`, { prefix });
  try {
    assert.is(await store.compareAndSet('in-db-3', null, { seqno: 3n, data: Buffer.from('three') }), CaSResult.Committed);
    const url = `redis://127.0.0.1:${server.port}`;
    const byFlags = await cli(['-u', url, '-a', 'pw', '-n', '3', '--prefix', prefix, 'head', 'in-db-3']);
    assert.is(byFlags.code, 0, byFlags.stderr);
    assert.is(byFlags.stdout, '3\tthree\n');
    const byEnv = await cli(['-u', `${url}/3`, '--user', 'default', '--prefix', prefix, 'head', 'in-db-3'], { env: { REDISCLI_AUTH: 'pw' } });
    assert.is(byEnv.stdout, '3\tthree\n', byEnv.stderr);
    // -n overrides the URL's database: database 0 has no such key.
    const otherDb = await cli(['-u', `${url}/3`, '-a', 'pw', '-n', '0', '--prefix', prefix, 'head', 'in-db-3']);
    assert.is(otherDb.code, 4, otherDb.stderr);
    const missing = await cli(['-u', url, 'ping'], { env: { REDISCLI_AUTH: '' } });
    assert.is(missing.code, 3);
    assert.match(missing.stderr, 'Redis asks for a password: give -a PASSWORD');
    const wrong = await cli(['-u', url, '-a', 'nope', 'ping']);
    assert.is(wrong.code, 3);
    assert.match(wrong.stderr, /wrong user name or password\n$/);
    assert.not.match(wrong.stderr, 'nope');
    const noDb = await cli(['-u', url, '-a', 'pw', '-n', '99', 'ping']);
    assert.match(noDb.stderr, 'the server has no database 99');
  } finally {
    await store.close();
    await server.stop();
  }
});

real('the packaged binary (package.json bin) has its shebang and runs', async () => {
  assert.is(readFileSync(BIN, 'utf8').split('\n', 1)[0], '#!/usr/bin/env node');
  const version = await cli(['--version'], { script: BIN });
  assert.is(version.stdout, `${MANIFEST.version}\n`);
  const head = await cli(['--prefix', prefix, 'head', 'alpha'], { script: BIN });
  assert.is(head.code, 0);
  assert.is(head.stdout, '4\tv4\n');
  const missing = await cli(['--prefix', prefix, 'head', 'nothing'], { script: BIN });
  assert.is(missing.code, 4);
});

real('ping prints the round-trip time', async () => {
  const text = await run(['ping']);
  assert.is(text.code, 0);
  assert.match(text.stdout, /^PONG \d+\.\d{3} ms\n$/);
  const machine = await run(['ping', '--json']);
  const [reply] = json(machine.stdout);
  assert.is(reply?.['ok'], true);
  assert.type(reply?.['ms'], 'number');
});

real('keys lists every key exactly once; --json is exact for any key', async () => {
  const text = await run(['keys']);
  assert.is(text.code, 0);
  assert.equal(lines(text.stdout).sort(), ['alpha', 'bin', 'key ü'].sort());
  assert.is(text.stderr, '');
  const machine = await run(['keys', '--json']);
  assert.equal(json(machine.stdout).map((line) => line['key']).sort(), ['alpha', BINARY_KEY].sort());
});

real('keys --progress reports a count on stderr every 1000 keys, and keys go to stdout', async () => {
  const bulk = freshPrefix('cli-bulk');
  const store = await RedisConsensus.connect(REDIS_URL, { prefix: bulk });
  try {
    const names = Array.from({ length: 1005 }, (_, i) => `k${i}`);
    for (let i = 0; i < names.length; i += 100) {
      await Promise.all(names.slice(i, i + 100).map((key) =>
        store.compareAndSet(key, null, { seqno: 1n, data: Buffer.from(key) })));
    }
    const result = await cli(['--prefix', bulk, 'keys', '--progress']);
    assert.is(result.code, 0);
    assert.equal(lines(result.stdout).sort(), [...names].sort());
    assert.equal(lines(result.stderr), ['progress: 1000 keys', 'progress: 1005 keys, done']);
    const stats = await cli(['--prefix', bulk, 'stats', '--json', '--top', '0']);
    assert.equal(json(stats.stdout), [{ keys: 1005, versions: 1005, payloadBytes: names.join('').length, largest: [] }]);
  } finally {
    await store.close();
    await deletePrefix(raw, bulk);
  }
});

real('head prints the latest version in every encoding; binary data and seqno 2^63-1 are exact', async () => {
  const text = await run(['head', 'alpha']);
  assert.is(text.code, 0);
  assert.is(text.stdout, '4\tv4\n');
  const machine = await run(['head', BINARY_KEY, '--json']);
  assert.equal(json(machine.stdout), [{ seqno: SEQNO_MAX.toString(), bytes: BINARY.length, data: BINARY.toString('base64') }]);
  assert.is((await run(['head', BINARY_KEY, '--encoding', 'hex'])).stdout, `${SEQNO_MAX}\t${BINARY.toString('hex')}\n`);
  assert.is((await run(['head', 'alpha', '--json', '--encoding', 'utf8'])).stdout,
    '{"seqno":"4","bytes":2,"data":"v4"}\n');
});

real('lease shows the holder, token and remaining time, then the last holder once released', async () => {
  // A store of its own: the other tests count this suite's keys.
  const own = freshPrefix('cli-lease');
  const store = await RedisConsensus.connect(REDIS_URL, { prefix: own });
  const run = (args: string[]): Promise<Run> => cli(['--prefix', own, ...args]);
  await store.compareAndSet('alpha', null, { seqno: 0n, data: Buffer.from('not a lease') });
  const lease = await store.acquireLease('leader', { ttlMs: 60_000, name: 'worker-7' });
  try {
    const text = await run(['lease', 'leader']);
    assert.is(text.code, 0, text.stderr);
    assert.match(text.stdout, /^held by "worker-7" \(owner [0-9a-f]{16}\), token 0, \d+ ms left, 0 waiting\n$/);
    const [shown] = json((await run(['lease', 'leader', '--json'])).stdout);
    assert.is(shown!['held'], true);
    assert.is(shown!['token'], lease.token.toString());
    assert.is(shown!['name'], 'worker-7');
    assert.ok(Number(shown!['remainingMs']) > 50_000 && Number(shown!['remainingMs']) <= 60_000, String(shown!['remainingMs']));
  } finally {
    await lease.release();
  }
  const free = await run(['lease', 'leader']);
  assert.match(free.stdout, /^free: last held by "worker-7" \(owner [0-9a-f]{16}\), token 0, released; 0 waiting\n$/);
  assert.is((await run(['lease', 'nothing'])).code, 4);
  const other = await run(['lease', 'alpha']);
  assert.is(other.code, 1);
  assert.match(other.stderr, 'not a lease record');
  await store.close();
  await deletePrefix(raw, own);
});

real('head and scan of a key with no data exit with 4', async () => {
  for (const args of [['head', 'nothing'], ['scan', 'nothing'], ['scan', 'nothing', '--limit', '0']]) {
    const result = await run(args);
    assert.is(result.code, 4, args.join(' '));
    assert.match(result.stderr, 'no data under key "nothing"');
    assert.is(result.stdout, '');
  }
  const wrongPrefix = await cli(['--prefix', freshPrefix('cli-empty'), 'head', 'alpha']);
  assert.is(wrongPrefix.code, 4);
});

real('scan prints versions ascending, honouring --from and --limit', async () => {
  assert.is((await run(['scan', 'alpha'])).stdout, '0\tv0\n1\tv1\n2\tv2\n3\tv3\n4\tv4\n');
  assert.is((await run(['scan', 'alpha', '--from', '2', '--limit', '2'])).stdout, '2\tv2\n3\tv3\n');
  const above = await run(['scan', 'alpha', '--from', '5']);
  assert.is(above.code, 0);
  assert.is(above.stdout, '');
  const machine = await run(['scan', 'alpha', '--json', '--from', '3']);
  assert.equal(json(machine.stdout), [
    { seqno: '3', bytes: 2, data: Buffer.from('v3').toString('base64') },
    { seqno: '4', bytes: 2, data: Buffer.from('v4').toString('base64') },
  ]);
});

real('scan pages through a history longer than one page without gaps or repeats', async () => {
  const key = 'long';
  const total = 2100;
  for (let seqno = 0; seqno < total; seqno++) {
    // Gaps of 2: the pages must continue from the last seqno seen, not count positions.
    await consensus.compareAndSet(key, seqno === 0 ? null : 2 * (seqno - 1), { seqno: 2 * seqno, data: Buffer.from([seqno % 256]) });
  }
  const all = await run(['scan', key, '--json']);
  assert.is(all.code, 0);
  const seqnos = json(all.stdout).map((line) => Number(line['seqno']));
  assert.equal(seqnos, Array.from({ length: total }, (_, i) => 2 * i));
  const window = await run(['scan', key, '--from', '201', '--limit', '1500', '--encoding', 'hex']);
  const windowSeqnos = lines(window.stdout).map((line) => Number(line.split('\t')[0]));
  assert.is(windowSeqnos.length, 1500);
  assert.is(windowSeqnos[0], 202);
  assert.is(windowSeqnos.at(-1), 202 + 2 * 1499);
  const stats = await run(['stats', '--json', '--top', '1']);
  assert.equal(json(stats.stdout), [{
    keys: 3, versions: 5 + 1 + total, payloadBytes: 10 + BINARY.length + total,
    largest: [{ key, versions: total, bytes: total }],
  }]);
});

real('stats counts keys, versions and bytes, and lists the largest histories', async () => {
  const result = await run(['stats', '--top', '2']);
  assert.is(result.code, 0);
  const output = lines(result.stdout);
  assert.match(output[0]!, /^keys +3$/);
  assert.match(output[3]!, 'largest histories:');
  assert.match(output[5]!, /^ +2100 +2100 +"long"$/);
  assert.match(output[6]!, /^ +5 +10 +"alpha"$/);
  assert.is(output.length, 7);
});

real('watch prints the head, then each new head as it commits, and exits with 0 on SIGINT', async () => {
  const child = spawn(process.execPath, [CLI, '--prefix', prefix, '--json', '--encoding', 'utf8', 'watch', 'watched'], {
    env: { ...process.env, REDIS_URL }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const printed = async (count: number): Promise<void> => {
    for (const deadline = Date.now() + 5000; lines(stdout).length < count;) {
      if (Date.now() > deadline) throw new Error(`watch printed ${JSON.stringify(stdout)} ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  try {
    assert.is(await consensus.compareAndSet('watched', null, { seqno: 0n, data: Buffer.from('first') }), CaSResult.Committed);
    await printed(1);
    for (let seqno = 1n; seqno <= 3n; seqno++) {
      assert.is(await consensus.compareAndSet('watched', seqno - 1n, { seqno, data: Buffer.from(`v${seqno}`) }), CaSResult.Committed);
      await printed(Number(seqno) + 1);
    }
    assert.equal(json(stdout), [
      { seqno: '0', bytes: 5, data: 'first' }, { seqno: '1', bytes: 2, data: 'v1' },
      { seqno: '2', bytes: 2, data: 'v2' }, { seqno: '3', bytes: 2, data: 'v3' },
    ]);
  } finally {
    child.kill('SIGINT');
  }
  assert.is(await exited, 0, stderr);
});

real('watch --from SEQNO prints every version from SEQNO in order, then each new one (NDJSON); truncated versions exit 1', async () => {
  for (let seqno = 0n; seqno <= 2n; seqno++) {
    assert.is(await consensus.compareAndSet('followed', seqno === 0n ? null : seqno - 1n, { seqno, data: Buffer.from(`f${seqno}`) }),
      CaSResult.Committed);
  }
  const child = spawn(process.execPath, [CLI, '--prefix', prefix, '--json', '--encoding', 'utf8', 'watch', 'followed', '--from', '1'], {
    env: { ...process.env, REDIS_URL }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  try {
    // Committed at once, faster than a watch would print each head: --from prints every one.
    for (let seqno = 3n; seqno <= 9n; seqno++) {
      assert.is(await consensus.compareAndSet('followed', seqno - 1n, { seqno, data: Buffer.from(`f${seqno}`) }), CaSResult.Committed);
    }
    for (const deadline = Date.now() + 5000; lines(stdout).length < 9;) {
      if (Date.now() > deadline) throw new Error(`watch --from printed ${JSON.stringify(stdout)} ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(json(stdout), Array.from({ length: 9 }, (_, i) => ({ seqno: String(i + 1), bytes: 2, data: `f${i + 1}` })));
  } finally {
    child.kill('SIGINT');
  }
  assert.is(await exited, 0, stderr);
  assert.is(await consensus.truncate('followed', 5), 5);
  const truncated = await run(['watch', 'followed', '--from', '2']);
  assert.is(truncated.code, 1);
  assert.match(truncated.stderr, 'versions from SeqNo(2) up to SeqNo(5) (excluded) may have been truncated');
  const bad = await run(['watch', 'followed', '--from', 'x1']);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, '--from must be a seqno');
});

real('truncate refuses without --yes when stdin is not a terminal, and deletes nothing', async () => {
  const result = await run(['truncate', 'alpha', '3'], { input: 'y\n' });
  assert.is(result.code, 2);
  assert.match(result.stderr, 'refusing to truncate without --yes');
  assert.is((await consensus.scan('alpha', 0n, 10)).length, 5);
});

real('truncate --yes deletes below SEQNO and reports how many; above the head exits with 1', async () => {
  const above = await run(['truncate', 'alpha', '5', '--yes']);
  assert.is(above.code, 1);
  assert.match(above.stderr, 'SEQNO 5 is above the head 4 of key "alpha": nothing deleted');
  const missing = await run(['truncate', 'nothing', '1', '-y']);
  assert.is(missing.code, 4);
  const done = await run(['truncate', 'alpha', '2', '--yes']);
  assert.is(done.code, 0);
  assert.is(done.stdout, 'deleted 2 versions of key "alpha" below seqno 2\n');
  assert.equal((await consensus.scan('alpha', 0n, 10)).map((version) => version.seqno), [2n, 3n, 4n]);
  const again = await run(['truncate', 'alpha', '2', '--yes', '--json']);
  assert.equal(json(again.stdout), [{ key: 'alpha', seqno: '2', deleted: 0 }]);
});

/** Whether util-linux `script` can give the CLI a terminal for stdin. */
const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;

real('truncate on a terminal asks, and only "y" deletes', async () => {
  if (!hasScript) {
    console.warn('\n!!! SKIPPING the terminal confirmation test: no util-linux `script` on PATH !!!\n');
    return;
  }
  const onTerminal = (answer: string): Run => {
    const command = [process.execPath, CLI, '--prefix', prefix, 'truncate', 'alpha', '4']
      .map((word) => `'${word.replace(/'/g, "'\\''")}'`).join(' ');
    const result = spawnSync('script', ['-qec', command, '/dev/null'], {
      input: answer, encoding: 'utf8', env: { ...process.env, REDIS_URL }, timeout: 20_000,
    });
    return { code: result.status, stdout: result.stdout, stderr: result.stderr };
  };
  const declined = onTerminal('n\n');
  assert.is(declined.code, 1);
  assert.match(declined.stdout, 'below seqno 4 (the head is 4)? [y/N]');
  assert.match(declined.stdout, 'not confirmed: nothing deleted');
  assert.is((await consensus.scan('alpha', 0n, 10)).length, 3);
  const accepted = onTerminal('y\n');
  assert.is(accepted.code, 0);
  assert.match(accepted.stdout, 'deleted 2 versions of key "alpha" below seqno 4');
  assert.equal((await consensus.scan('alpha', 0n, 10)).map((version) => version.seqno), [4n]);
});

real('keys on a terminal shows a running count on stderr while stdout goes to a file, then the total', async () => {
  if (!hasScript) {
    console.warn('!!! SKIPPING the terminal progress test: no util-linux `script` on PATH !!!');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'cli-progress-'));
  try {
    const out = join(dir, 'keys.txt');
    // --json: one line per key, whatever the key holds (one has a newline).
    const command = `'${process.execPath}' '${CLI}' --prefix '${prefix}' keys --json > '${out}'`;
    const result = spawnSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8', env: { ...process.env, REDIS_URL }, timeout: 20_000 });
    assert.is(result.status, 0, result.stdout);
    const listed = readFileSync(out, 'utf8').split('\n').filter((line) => line !== '').length;
    assert.ok(listed >= 2, `${listed} keys listed`);
    assert.match(result.stdout, `\r\u001b[K${listed} keys`, JSON.stringify(result.stdout));
    // Keys printed to the terminal itself: no count to tear them.
    const onScreen = spawnSync('script', ['-qec', `'${process.execPath}' '${CLI}' --prefix '${prefix}' keys`, '/dev/null'],
      { encoding: 'utf8', env: { ...process.env, REDIS_URL }, timeout: 20_000 });
    assert.not.match(onScreen.stdout, 'keys');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

real('examples/workers.mjs: forked workers build one gapless log', async () => {
  // The example imports 'redis-consensus', which resolves to dist/ through package.json exports.
  const result = await cli(['3', '15'], { script: join(ROOT, 'examples', 'workers.mjs') });
  assert.is(result.code, 0, result.stderr);
  assert.match(result.stdout, '3 workers appended 45 entries');
  assert.match(result.stdout, 'ok: one gapless log, every entry exactly once, each worker in order');
});

real('--cluster reads a store on a Redis Cluster', async () => {
  const port = 7460;
  const dir = mkdtempSync(join(tmpdir(), 'ops-cli-cluster-'));
  const server = spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
    // A lone node does not know its own address until told: CLUSTER SLOTS would name it "".
    '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-announce-ip', '127.0.0.1',
  ], { stdio: 'ignore' });
  const exited = new Promise((resolve) => server.once('exit', resolve));
  const admin = new Redis(port, '127.0.0.1', { lazyConnect: true });
  admin.on('error', () => {});
  let cluster: Cluster | undefined;
  try {
    for (let i = 0; i < 100 && spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.trim() !== 'PONG'; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await admin.connect();
    // One node serving every slot: a whole cluster as far as a client can tell.
    await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
    for (let i = 0; i < 100 && !String(await admin.call('CLUSTER', 'INFO')).includes('cluster_state:ok'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    cluster = new Cluster([{ host: '127.0.0.1', port }], { redisOptions: { autoResendUnfulfilledCommands: false } });
    cluster.on('error', () => {});
    const store = new RedisConsensus(cluster, { prefix });
    try {
      assert.is(await store.compareAndSet('on-cluster', null, { seqno: 7n, data: Buffer.from('c') }), CaSResult.Committed);
    } finally {
      await store.close();
    }
    const url = `redis://127.0.0.1:${port}`;
    assert.is((await run(['--cluster', '--url', url, 'head', 'on-cluster'])).stdout, '7\tc\n');
    assert.equal(lines((await run(['--cluster', '--url', url, 'keys'])).stdout), ['on-cluster']);
  } finally {
    cluster?.disconnect();
    admin.disconnect();
    server.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
