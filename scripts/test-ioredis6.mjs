#!/usr/bin/env node
/**
 * Runs spec/ioredis6.test.ts and spec/internals.test.ts against ioredis 6 without touching this
 * checkout's ioredis 5: a side install of ioredis 6 (and the two runtime packages the specs need,
 * at this checkout's versions) in .build-ioredis6/, with a copy of build/lib and the specs beside
 * it, so that Node resolves `ioredis` to version 6 for the library and the specs alike. `.ci/run` runs it after `npm test`,
 * so the client most new users install is proven on every submission. Needs `npm run build:test`.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const side = join(root, '.build-ioredis6');
// From node_modules directly: some packages (uvu) do not export their package.json.
const versionOf = (name) => JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version;

if (!existsSync(join(root, 'build', 'spec', 'ioredis6.test.js'))) {
  console.error('test-ioredis6: build/ is missing: run `npm run build:test` first');
  process.exit(2);
}
mkdirSync(side, { recursive: true });
writeFileSync(join(side, 'package.json'), JSON.stringify({ name: 'ioredis6-side', private: true, type: 'module' }));
const wanted = ['ioredis@^6.0.0', `ioredis-mock@${versionOf('ioredis-mock')}`, `uvu@${versionOf('uvu')}`];
const installed = (() => {
  try {
    return JSON.parse(readFileSync(join(side, 'node_modules', 'ioredis', 'package.json'), 'utf8')).version;
  } catch {
    return undefined;
  }
})();
if (installed === undefined || !installed.startsWith('6.')) {
  // --legacy-peer-deps: ioredis-mock 8 declares the peer ioredis ^5 only; it runs on 6 all the same.
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  execFileSync(npm, ['install', '--no-save', '--no-package-lock', '--legacy-peer-deps', '--no-audit', '--no-fund',
    '--loglevel', 'error', ...wanted], { cwd: side, stdio: 'inherit', shell: process.platform === 'win32' });
}
rmSync(join(side, 'build'), { recursive: true, force: true });
// internals.test.js too: the ioredis internals the library reaches into (lib/internals.ts) are
// what an ioredis major version may change.
for (const part of ['lib', join('spec', 'support'), join('spec', 'ioredis6.test.js'), join('spec', 'internals.test.js')]) {
  cpSync(join(root, 'build', part), join(side, 'build', part), { recursive: true });
}
// The spec fails, rather than skips, when it does not find ioredis 6 here.
for (const spec of ['ioredis6.test.js', 'internals.test.js']) {
  execFileSync(process.execPath, [join(side, 'build', 'spec', spec)], {
    stdio: 'inherit', env: { ...process.env, REQUIRE_IOREDIS6: '1' },
  });
}
