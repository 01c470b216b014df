/**
 * TLS (issue #11, deployment docs): a private redis-server that speaks only TLS to its clients and
 * demands a client certificate (`--tls-auth-clients yes`), with a CA, a server certificate and a
 * client certificate made here by `openssl` in a temporary directory. The CLI connects with
 * `--tls-ca` / `--tls-cert` / `--tls-key` (or REDIS_TLS_CA / _CERT / _KEY), and fails with exit
 * code 3 without the client certificate or with the wrong CA; the library passes its `tls` option
 * to ioredis as it is. The server also listens in plain text on another port, for this spec's
 * own setup only.
 *
 * Needs `openssl` and a redis-server built with TLS (Debian's is); without them the suite is
 * skipped loudly, unless REQUIRE_REDIS=1 or REQUIRE_SERVERS=1. Ports 7578 (TLS) and 7579.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CaSResult, ExternalError, RedisConsensus } from '../lib/index.js';
import { rejection, REQUIRE_REDIS } from './support/backends.js';
import { RedisServer } from './support/redis-server.js';

const CLI = fileURLToPath(new URL('../lib/cli/main.js', import.meta.url));
const TLS_PORT = 7578;
const PLAIN_PORT = 7579;
const TLS_URL = `redis://127.0.0.1:${TLS_PORT}`;
const PREFIX = 'tls-spec';
const REQUIRED = REQUIRE_REDIS || process.env.REQUIRE_SERVERS === '1';

/** Why TLS cannot be tested here, or undefined when it can. */
function missing(): string | undefined {
  if (spawnSync('openssl', ['version'], { stdio: 'ignore' }).status !== 0) return 'no openssl on PATH';
  const version = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (version.status !== 0) return 'no redis-server on PATH';
  return undefined;
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate it signed; and another CA. */
interface Certificates {
  readonly dir: string;
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** A CA that signed nothing here. */
  readonly otherCa: string;
}

function openssl(dir: string, ...args: string[]): void {
  const run = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${run.stderr}`);
}

/** Makes the certificates (EC P-256 keys, valid for a day) in a fresh temporary directory. */
function makeCertificates(): Certificates {
  const dir = mkdtempSync(join(tmpdir(), 'tls-spec-'));
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const ca of ['ca', 'other-ca']) {
    openssl(dir, 'req', '-x509', ...key, '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '1', '-subj', `/CN=redis-consensus ${ca}`);
  }
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const [name, subject] of [['server', '/CN=127.0.0.1'], ['client', '/CN=redis-consensus client']] as const) {
    openssl(dir, 'req', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
    openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
      '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`);
  }
  const at = (file: string): string => join(dir, file);
  return {
    dir, ca: at('ca.crt'), serverCert: at('server.crt'), serverKey: at('server.key'),
    clientCert: at('client.crt'), clientKey: at('client.key'), otherCa: at('other-ca.crt'),
  };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the CLI with `args` and `env` (no REDIS_TLS_* from the caller's environment). */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const started = Date.now();
  const inherited = { ...process.env };
  for (const name of ['REDIS_URL', 'REDIS_TLS_CA', 'REDIS_TLS_CERT', 'REDIS_TLS_KEY']) delete inherited[name];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, '--prefix', PREFIX, ...args], {
      env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

const test = suite('TLS: the CLI and connect with client certificates');
const why = missing();
if (why !== undefined) {
  if (REQUIRED) throw new Error(`REQUIRE_REDIS=1 but TLS cannot be tested: ${why}`);
  console.warn(`\n!!! SKIPPING the TLS suite: ${why}. Set REQUIRE_REDIS=1 to make this a failure. !!!\n`);
}

let certs: Certificates;
let server: RedisServer | undefined;

test.before(async () => {
  if (why !== undefined) return;
  certs = makeCertificates();
  try {
    server = await RedisServer.start({
      port: PLAIN_PORT,
      args: ['--tls-port', String(TLS_PORT), '--tls-cert-file', certs.serverCert, '--tls-key-file', certs.serverKey,
        '--tls-ca-cert-file', certs.ca, '--tls-auth-clients', 'yes'],
    });
  } catch (err) {
    // A redis-server built without TLS refuses --tls-port.
    if (REQUIRED || !/tls-port|Bad directive/i.test((err as Error).message)) throw err;
    console.warn(`\n!!! SKIPPING the TLS suite: this redis-server has no TLS (${(err as Error).message.split('\n')[0]}). !!!\n`);
  }
});

test.after(async () => {
  await server?.stop();
  if (certs !== undefined) rmSync(certs.dir, { recursive: true, force: true });
});

/** Registers a test that needs the TLS server. */
const withTls = (name: string, body: () => Promise<void>): void => {
  test(name, async () => {
    if (server === undefined) return;
    await body();
  });
};

/** The TLS options of a client with the client certificate. */
const clientTls = (): { ca: Buffer; cert: Buffer; key: Buffer } => ({
  ca: readFileSync(certs.ca), cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey),
});

withTls('connect(rediss://..., options, { tls }) passes the certificates to ioredis: every call, and a watch, over TLS', async () => {
  const consensus = await RedisConsensus.connect(`rediss://127.0.0.1:${TLS_PORT}`, { prefix: PREFIX }, { tls: clientTls() });
  try {
    assert.is(await consensus.compareAndSet('lib', null, { seqno: 0n, data: Buffer.from('over tls') }), CaSResult.Committed);
    assert.is((await consensus.head('lib'))?.data.toString(), 'over tls');
    // The watch's subscriber is a duplicate of the connection, certificates included.
    const seen: bigint[] = [];
    for await (const head of consensus.watch('lib', { signal: AbortSignal.timeout(3000) })) {
      seen.push(head.seqno);
      if (head.seqno === 0n) await consensus.compareAndSet('lib', 0n, { seqno: 1n, data: Buffer.from('again') });
      else break;
    }
    assert.equal(seen, [0n, 1n]);
  } finally {
    await consensus.close();
  }
});

withTls('connect without the client certificate fails determinate, within its deadline', async () => {
  const started = Date.now();
  const err = await rejection(RedisConsensus.connect(`rediss://127.0.0.1:${TLS_PORT}`, { prefix: PREFIX, timeoutMs: 1500 },
    { tls: { ca: readFileSync(certs.ca) } }));
  assert.instance(err, ExternalError);
  assert.is((err as ExternalError).determinate, true, (err as Error).message);
  assert.ok(Date.now() - started < 2500, `${Date.now() - started} ms`);
});

withTls('the CLI connects with --tls-ca, --tls-cert and --tls-key: ping, head, keys, truncate', async () => {
  const tls = ['--tls-ca', certs.ca, '--tls-cert', certs.clientCert, '--tls-key', certs.clientKey];
  const consensus = await RedisConsensus.connect(`rediss://127.0.0.1:${TLS_PORT}`, { prefix: PREFIX }, { tls: clientTls() });
  try {
    for (let seqno = 0n; seqno < 3n; seqno++) {
      await consensus.compareAndSet('cli', seqno === 0n ? null : seqno - 1n, { seqno, data: Buffer.from(`v${seqno}`) });
    }
  } finally {
    await consensus.close();
  }
  const ping = await cli(['--url', TLS_URL, ...tls, 'ping']);
  assert.is(ping.code, 0, ping.stderr);
  assert.match(ping.stdout, /^PONG /);
  // rediss:// says the same; the files are what matters.
  const head = await cli(['--url', `rediss://127.0.0.1:${TLS_PORT}`, ...tls, 'head', 'cli']);
  assert.is(head.code, 0, head.stderr);
  assert.is(head.stdout, '2\tv2\n');
  // redis-cli's names: --tls with a redis:// URL, --cacert, --cert, --key.
  const named = await cli(['-u', `redis://127.0.0.1:${TLS_PORT}`, '--tls', '--cacert', certs.ca, '--cert', certs.clientCert,
    '--key', certs.clientKey, 'head', 'cli']);
  assert.is(named.code, 0, named.stderr);
  assert.is(named.stdout, '2\tv2\n');
  // --tls alone speaks TLS (the system's CAs do not vouch for this server's test CA).
  const systemCas = await cli(['-u', `redis://127.0.0.1:${TLS_PORT}`, '--tls', '--timeout', '2000', 'ping']);
  assert.is(systemCas.code, 3, systemCas.stderr);
  assert.match(systemCas.stderr, 'not signed by a CA we trust');
  const keys = await cli(['--url', TLS_URL, ...tls, 'keys']);
  assert.equal(keys.stdout.split('\n').filter((line) => line !== '').sort(), ['cli', 'lib']);
  const truncated = await cli(['--url', TLS_URL, ...tls, '--json', 'truncate', 'cli', '2', '--yes']);
  assert.is(truncated.code, 0, truncated.stderr);
  assert.match(truncated.stdout, '"deleted":2');
});

withTls('the CLI takes the files from REDIS_TLS_CA, REDIS_TLS_CERT and REDIS_TLS_KEY; an option overrides its variable', async () => {
  const env = { REDIS_URL: TLS_URL, REDIS_TLS_CA: certs.ca, REDIS_TLS_CERT: certs.clientCert, REDIS_TLS_KEY: certs.clientKey };
  const viaEnv = await cli(['head', 'cli'], env);
  assert.is(viaEnv.code, 0, viaEnv.stderr);
  assert.is(viaEnv.stdout, '2\tv2\n');
  const overridden = await cli(['--timeout', '2000', '--tls-ca', certs.otherCa, 'ping'], env);
  assert.is(overridden.code, 3, overridden.stderr);
});

withTls('the CLI without the client certificate, or with the wrong CA, exits 3 within --timeout and says why', async () => {
  const [noCert, wrongCa] = await Promise.all([
    cli(['--url', TLS_URL, '--timeout', '2000', '--tls-ca', certs.ca, 'ping']),
    cli(['--url', TLS_URL, '--timeout', '2000', '--tls-ca', certs.otherCa, '--tls-cert', certs.clientCert, '--tls-key', certs.clientKey, 'ping']),
  ]);
  for (const run of [noCert, wrongCa]) {
    assert.is(run.code, 3, run.stderr);
    assert.match(run.stderr, `cannot reach Redis at ${TLS_URL}`);
    assert.is(run.stdout, '');
    // Node's start-up included.
    assert.ok(run.ms < 5000, `${run.ms} ms`);
  }
  // The alert itself, or (TLS 1.3) the reset that may overtake it: both name the client certificate.
  assert.match(noCert.stderr, /(requires a client certificate|if it requires a client certificate), give --cert and --key|requires a client certificate: give --cert and --key/, noCert.stderr);
  assert.match(wrongCa.stderr, "the server's certificate is not signed by a CA we trust (--cacert)");
  for (const run of [noCert, wrongCa]) assert.is(run.stderr.split(TLS_URL).length, 2, `the URL once: ${run.stderr}`);
  console.log(`    (expected refusals) without the client certificate: ${noCert.stderr.trim()}\n    (expected refusals) with the wrong CA: ${wrongCa.stderr.trim()}`);
});

test('a TLS file that cannot be read, or a certificate without its key, is a usage error (exit 2) before connecting', async () => {
  const nowhere = join(tmpdir(), `no-such-dir-${process.pid}`, 'ca.pem');
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['--tls-ca', nowhere, 'ping'], {}, /--tls-ca: cannot read ".*ca\.pem": ENOENT/],
    [['ping'], { REDIS_TLS_KEY: nowhere, REDIS_TLS_CERT: nowhere }, /\$REDIS_TLS_CERT: cannot read/],
    [['--tls-cert', CLI, 'ping'], {}, /needs both --cert and --key/],
    [['--cert', CLI, 'ping'], {}, /needs both --cert and --key .*got --cert$/m],
    [['--cacert', nowhere, 'ping'], {}, /--cacert: cannot read/],
    [['--tls-ca', CLI, '--cacert', CLI, 'ping'], {}, /--tls-ca and --cacert are the same option/],
    [['--tls-key', CLI, 'ping'], { REDIS_TLS_CA: CLI }, /needs both --cert and --key .*got \$REDIS_TLS_CA, --tls-key/],
  ];
  for (const [args, env, message] of cases) {
    // Nothing listens at the URL: a usage error comes before any connection.
    const run = await cli(args, { REDIS_URL: 'redis://127.0.0.1:7577', ...env });
    assert.is(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    assert.match(run.stderr, message);
  }
  const help = await cli(['--help']);
  for (const option of ['--cacert FILE', '--cert FILE', '--key FILE', 'also --tls-ca', 'also --tls-cert', 'also --tls-key', '$REDIS_TLS_CA', '--tls ']) {
    assert.match(help.stdout, option);
  }
});

test.run();
