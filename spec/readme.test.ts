/**
 * The complete examples of the README and of docs/ (the code blocks that import
 * 'redis-consensus') run as written, against the built package, with only the store prefix made
 * unique to this run.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { Redis } from 'ioredis';
import { deletePrefix, freshPrefix, REDIS_URL, realRedisAvailable } from './support/backends.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
const readme = ['README.md', ...readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)]
  .map((file) => readFileSync(join(root, file), 'utf8')).join('\n');
const programs = [...readme.matchAll(/```ts\n(import [\s\S]*?)```/g)].map((match) => match[1]!)
  .filter((source) => source.includes("from 'redis-consensus'"));
const test = suite('README examples');

test('the README has complete examples to run', () => {
  assert.ok(programs.length >= 3, `found ${programs.length}`);
});

for (const [i, source] of programs.entries()) {
  const title = source.split('\n').find((line) => !line.startsWith('import') && line.trim() !== '') ?? '';
  test(`example ${i + 1} runs: ${title.trim().slice(0, 60)}`, async () => {
    const needsRedis = !source.includes('ioredis-mock');
    if (needsRedis && !(await realRedisAvailable())) return;
    const prefix = freshPrefix('readme');
    const js = ts.transpileModule(source.replaceAll("prefix: 'myapp'", `prefix: '${prefix}'`), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText.replaceAll("'redis-consensus'", `'${pathToFileURL(join(root, 'dist/lib/index.js')).href}'`)
      // A program that leaves its connection open would never exit; the README's examples end there.
      + '\nsetTimeout(() => process.exit(0), 200).unref();\n';
    // In the repository, so that the example's own imports (ioredis, prom-client) resolve.
    const file = join(root, `.readme-example-${process.pid}-${i}.mjs`);
    writeFileSync(file, js);
    try {
      const { stderr } = await run(process.execPath, [file], { env: { ...process.env, REDIS_URL }, timeout: 20_000 });
      assert.is(stderr, '');
    } finally {
      rmSync(file, { force: true });
      if (needsRedis) {
        const raw = new Redis(REDIS_URL);
        await deletePrefix(raw, prefix);
        await raw.quit();
      }
    }
  });
}

test.run();
