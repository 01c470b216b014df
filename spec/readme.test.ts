/**
 * Every ts block of the README is a whole program, and it and the complete examples of docs/ (the
 * code blocks that import 'redis-consensus') type-check with `strict` against the package's
 * published declarations, in a project that installed the package as a user's would, and run as
 * written there, with only the store prefix made unique to this run. A block whose first line is
 * `// compile-only` (it needs a Redis Cluster at fixed addresses) is type-checked, not run.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { consumerRoot, node, root, tsc } from './support/consumer.js';
import type { ConsumerRoot } from './support/consumer.js';
import { deletePrefix, freshPrefix, REDIS_URL, realRedisAvailable } from './support/backends.js';

/** Every ts block of the README must be a whole program; docs/ may also show fragments. */
const README_BLOCKS = [...readFileSync(join(root, 'README.md'), 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]!);
const docs = readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md'))
  .map((name) => readFileSync(join(root, 'docs', name), 'utf8')).join('\n');
const DOCS_PROGRAMS = [...docs.matchAll(/```ts\n((?:\/\/ compile-only[^\n]*\n)?import [\s\S]*?)```/g)].map((match) => match[1]!);
/** A block that needs what a test cannot give (a Cluster at fixed addresses) says so on its first line. */
const COMPILE_ONLY = /^\/\/ compile-only\b/;
const programs = [...README_BLOCKS.filter((source) => /^(import |\/\/ compile-only)/.test(source)), ...DOCS_PROGRAMS]
  .filter((source) => source.includes("from 'redis-consensus'"))
  .map((source) => ({
    source, prefix: freshPrefix('readme'), needsRedis: !source.includes('ioredis-mock'), runs: !COMPILE_ONLY.test(source),
  }));
const test = suite('README examples');

let consumers: ConsumerRoot | undefined;
let project = '';
test.before(async () => {
  consumers = await consumerRoot('readme');
  project = consumers.project('readme', {
    'package.json': JSON.stringify({ name: 'readme-examples', private: true, type: 'module' }),
    'tsconfig.json': JSON.stringify({
      compilerOptions: {
        module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true,
        outDir: 'out', types: ['node'],
      },
      include: ['src'],
    }),
    ...Object.fromEntries(programs.map(({ source, prefix }, i) => [
      `src/example-${i + 1}.ts`,
      source.replaceAll("prefix: 'myapp'", `prefix: '${prefix}'`)
        // A program that leaves its connection open would never exit; the README's examples end there.
        + '\nsetTimeout(() => process.exit(0), 200).unref();\nexport {};\n',
    ])),
  });
});

test.after(() => {
  consumers?.remove();
});

test('every ts block of the README is a whole program that imports redis-consensus', () => {
  assert.ok(README_BLOCKS.length >= 6, `found ${README_BLOCKS.length}`);
  const fragments = README_BLOCKS.filter((source) => !/^(import |\/\/ compile-only)/.test(source) || !source.includes("from 'redis-consensus'"));
  assert.equal(fragments.map((source) => source.split('\n')[0]), [], 'README ts blocks that are not whole programs');
});

test('the examples type-check (strict, nodenext) against the published declarations', async () => {
  await tsc(project);
});

for (const [i, { source, prefix, needsRedis, runs }] of programs.entries()) {
  if (!runs) continue;
  const title = source.split('\n').find((line) => !line.startsWith('import') && line.trim() !== '') ?? '';
  test(`example ${i + 1} runs: ${title.trim().slice(0, 60)}`, async () => {
    if (needsRedis && !(await realRedisAvailable())) return;
    try {
      await node(join(project, 'out', `example-${i + 1}.js`), { REDIS_URL });
    } finally {
      if (needsRedis) {
        const raw = new Redis(REDIS_URL);
        await deletePrefix(raw, prefix);
        await raw.quit();
      }
    }
  });
}

test.run();
