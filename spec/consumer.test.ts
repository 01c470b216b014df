/**
 * The published package works in every kind of Node project: installed from the tarball `npm pack`
 * makes, imported from ESM and required from CommonJS, type-checked by TypeScript under each module
 * resolution (strict, passing the user's own ioredis client), bundled into one file by esbuild, and
 * used in a user's own unit test on ioredis-mock. Each program talks to the real Redis at REDIS_URL.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { build } from 'esbuild';
import { consumerRoot, node, root, tsc } from './support/consumer.js';
import type { ConsumerRoot } from './support/consumer.js';
import { deletePrefix, freshPrefix, REDIS_URL, realRedisAvailable } from './support/backends.js';

/**
 * What every consumer does, written so that it is valid JavaScript and strict TypeScript alike:
 * its own client passed in (no cast), compare-and-set, scan, listKeys, an ExternalError.
 */
const BODY = `
async function main() {
  const client = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  const consensus = new RedisConsensus(client, { prefix: process.env.CONSUMER_PREFIX ?? 'consumer' });
  const data = Buffer.from([0, 1, 127, 128, 254, 255]);
  const results = [
    await consensus.compareAndSet('k', null, { seqno: 0n, data }),
    await consensus.compareAndSet('k', null, { seqno: 1n, data }),
    await consensus.compareAndSet('k', 0n, { seqno: 1n, data: new Uint8Array() }),
  ];
  const scan = (await consensus.scan('k', 0n, 10)).map((v) => [v.seqno.toString(), Buffer.from(v.data).toString('hex')]);
  const keys = [];
  for await (const key of consensus.listKeys()) keys.push(key);
  let truncateError = 'none';
  try {
    await consensus.truncate('never-written', 0n);
  } catch (err) {
    truncateError = err instanceof ExternalError ? 'ExternalError determinate=' + err.determinate : String(err);
  }
  await consensus.close();
  await client.quit();
  return { results, committed: CaSResult.Committed, scan, keys, truncateError };
}
`;
const ESM_IMPORTS = `import { Redis } from 'ioredis';
import { CaSResult, ExternalError, RedisConsensus } from 'redis-consensus';
`;
const ESM_PROGRAM = `${ESM_IMPORTS}${BODY}
main().then((outcome) => console.log(JSON.stringify(outcome)), (err) => { console.error(err); process.exitCode = 1; });
`;
const CJS_PROGRAM = `const { Redis } = require('ioredis');
const { CaSResult, ExternalError, RedisConsensus } = require('redis-consensus');
const { version } = require('redis-consensus/package.json');
${BODY}
// One copy of the package whichever way it is loaded: no dual-package hazard.
Promise.all([main(), import('redis-consensus')]).then(([outcome, esm]) => console.log(JSON.stringify({
  ...outcome, sameClassAsImport: esm.ExternalError === ExternalError, version,
})), (err) => { console.error(err); process.exitCode = 1; });
`;
const EXPECTED = {
  results: ['Committed', 'ExpectationMismatch', 'Committed'],
  committed: 'Committed',
  scan: [['0', '00017f80feff'], ['1', '']],
  keys: ['k'],
  truncateError: 'ExternalError determinate=true',
};

function tsconfig(compilerOptions: Record<string, unknown>): string {
  return JSON.stringify({
    compilerOptions: { target: 'es2022', strict: true, noEmit: false, outDir: 'out', types: ['node'], ...compilerOptions },
    include: ['src'],
  });
}

/** A user's own unit test on ioredis-mock, as the README shows it: one mock port per test. */
const MOCK_TEST = `import assert from 'node:assert/strict';
import RedisMock from 'ioredis-mock';
import { CaSResult, RedisConsensus } from 'redis-consensus';

let port = 50_000;
function freshStore(): RedisConsensus {
  return new RedisConsensus(new RedisMock({ port: port++ }));
}

const first = freshStore();
assert.equal(await first.compareAndSet('k', null, { seqno: 0n, data: Buffer.from([0, 255]) }), CaSResult.Committed);
assert.deepEqual((await first.head('k'))?.data, Buffer.from([0, 255]));
const second = freshStore();
assert.equal(await second.head('k'), null, 'a test on its own port sees nothing of the previous one');
await Promise.all([first.close(), second.close()]);
console.log(JSON.stringify({ isolated: true }));
`;

const test = suite('consumer projects');
let consumers: ConsumerRoot | undefined;
let available = false;
const prefixes: string[] = [];

test.before(async () => {
  available = await realRedisAvailable();
  if (!available) return;
  assert.ok(existsSync(join(root, 'dist/lib/index.js')), 'dist/ is built (npm run build)');
  consumers = await consumerRoot('consumer');
});

test.after(async () => {
  consumers?.remove();
  if (prefixes.length === 0) return;
  const raw = new Redis(REDIS_URL);
  for (const prefix of prefixes) await deletePrefix(raw, prefix);
  await raw.quit();
});

/** Runs a built consumer against Redis under a fresh prefix; what it printed. */
async function runConsumer(file: string, cwd?: string): Promise<Record<string, unknown>> {
  const prefix = freshPrefix('consumer');
  prefixes.push(prefix);
  return JSON.parse(await node(file, { REDIS_URL, CONSUMER_PREFIX: prefix }, cwd)) as Record<string, unknown>;
}

test('the package ships its entry points, its bin, what its README links to, and no lua/, maps or specs', () => {
  if (!available) return;
  const files = consumers!.files;
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  // Relative links only: anything else (examples/, spec/) must be linked absolutely.
  const linked = [...readme.matchAll(/\]\((?!https?:|#)([^)#]+)/g)].map((match) => match[1]!);
  assert.ok(linked.includes('docs/contract.md'), 'the README links to the contract');
  for (const file of ['package.json', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'README.md', 'LICENSE',
    'CHANGELOG.md', ...Object.values(manifest.bin).map((bin) => bin.replace(/^\.\//, '')), ...linked]) {
    assert.ok(files.includes(file), `${file} is in the package`);
  }
  assert.ok(!files.some((file) => file.startsWith('lua/') || file.endsWith('.map') || file.startsWith('spec/')),
    `no lua/, source maps or specs: ${files.join(', ')}`);
});

test('ESM JavaScript: import', async () => {
  if (!available) return;
  const project = consumers!.project('esm', { 'main.mjs': ESM_PROGRAM });
  assert.equal(await runConsumer(join(project, 'main.mjs')), EXPECTED);
});

test('CommonJS JavaScript: require, the same classes as import', async () => {
  if (!available) return;
  const project = consumers!.project('cjs', { 'main.cjs': CJS_PROGRAM });
  const outcome = await runConsumer(join(project, 'main.cjs'));
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  assert.equal(outcome, { ...EXPECTED, sameClassAsImport: true, version });
});

const TS_PROJECTS: Array<[string, string, Record<string, unknown>]> = [
  ['nodenext', 'module', { module: 'nodenext', moduleResolution: 'nodenext' }],
  ['bundler', 'module', { module: 'esnext', moduleResolution: 'bundler' }],
  ['commonjs (node10 resolution)', 'commonjs', { module: 'commonjs', moduleResolution: 'node10', esModuleInterop: true }],
];

/** The TypeScript projects, compiled once: tsc's complaints, if any (it emits JavaScript regardless). */
let compiled: Promise<string[]> | undefined;
function tsProjects(): { projects: string[]; complaints: Promise<string[]> } {
  const projects = TS_PROJECTS.map((_, i) => join(consumers!.dir, `ts-${i}`));
  compiled ??= Promise.all(TS_PROJECTS.map(([name, type, options], i) => tsc(consumers!.project(`ts-${i}`, {
    'package.json': JSON.stringify({ name: `consumer-${i}`, private: true, type }),
    'tsconfig.json': tsconfig(options),
    'src/main.ts': ESM_PROGRAM,
    ...(name === 'nodenext' ? { 'src/mock.test.ts': MOCK_TEST } : {}),
  })).then(() => '', (err: Error) => `${name}: ${err.message}`)));
  return { projects, complaints: compiled };
}

test('TypeScript projects type-check with strict under nodenext, bundler and commonjs, the user\'s own client passed in without a cast', async () => {
  if (!available) return;
  assert.equal((await tsProjects().complaints).filter((complaint) => complaint !== ''), []);
});

test('the compiled TypeScript projects, an esbuild single-file bundle and a user unit test on ioredis-mock run', async () => {
  if (!available) return;
  const { projects, complaints } = tsProjects();
  const esm = consumers!.project('bundle-source', { 'main.mjs': ESM_PROGRAM });
  // The bundle runs from a directory of its own: no node_modules, no lua/ anywhere above it.
  const bundleDir = mkdtempSync(join(tmpdir(), 'redis-consensus-bundle-'));
  try {
    await Promise.all([
      complaints,
      build({ entryPoints: [join(esm, 'main.mjs')], bundle: true, platform: 'node', format: 'cjs', target: 'node20',
        outfile: join(bundleDir, 'main.cjs'), logLevel: 'silent' }),
    ]);
    const outcomes = await Promise.all([
      ...projects.map((project) => runConsumer(join(project, 'out', 'main.js'))),
      runConsumer(join(bundleDir, 'main.cjs'), bundleDir),
    ]);
    for (const [i, outcome] of outcomes.entries()) {
      assert.equal(outcome, EXPECTED, TS_PROJECTS[i]?.[0] ?? 'esbuild bundle');
    }
    assert.equal(JSON.parse(await node(join(projects[0]!, 'out', 'mock.test.js'), {})), { isolated: true });
  } finally {
    rmSync(bundleDir, { recursive: true, force: true });
  }
});

test.run();
