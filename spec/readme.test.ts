/**
 * The complete examples of the README and of docs/ (the code blocks that import
 * 'redis-consensus') type-check with `strict` against the package's published declarations, in a
 * project that installed the package as a user's would, and run as written there, with only the
 * store prefix made unique to this run.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { consumerRoot, node, root, tsc } from './support/consumer.js';
import type { ConsumerRoot } from './support/consumer.js';
import { deletePrefix, freshPrefix, REDIS_URL, realRedisAvailable } from './support/backends.js';

const readme = ['README.md', ...readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)]
  .map((file) => readFileSync(join(root, file), 'utf8')).join('\n');
const programs = [...readme.matchAll(/```ts\n(import [\s\S]*?)```/g)].map((match) => match[1]!)
  .filter((source) => source.includes("from 'redis-consensus'"))
  .map((source) => ({ source, prefix: freshPrefix('readme'), needsRedis: !source.includes('ioredis-mock') }));
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

test('the README has complete examples to run', () => {
  assert.ok(programs.length >= 3, `found ${programs.length}`);
});

test('the examples type-check (strict, nodenext) against the published declarations', async () => {
  await tsc(project);
});

for (const [i, { source, prefix, needsRedis }] of programs.entries()) {
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
