/**
 * The shape of `lib/` that docs/architecture.md promises: every module on its map, no import
 * cycle, no module much over 400 lines. Reads the TypeScript sources (the spec runs from
 * `build/spec`, the sources sit two levels up).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LIB = join(ROOT, 'lib');
/** "About 400 lines" (issue 9), with room for a doc comment or two. */
const MAX_LINES = 420;

/** Every hand-written module of lib/, as a path relative to lib/ (`cli/args.ts`). */
function modules(dir = LIB): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'generated' ? [] : modules(path);
    return entry.name.endsWith('.ts') ? [relative(LIB, path)] : [];
  });
}

/** The lib/ modules a module imports (relative imports only; `import type` included). */
function importsOf(module: string): string[] {
  const source = readFileSync(join(LIB, module), 'utf8');
  const found = new Set<string>();
  for (const match of source.matchAll(/^(?:import|export)[^'"]*from '(\.{1,2}\/[^']+)'/gm)) {
    const target = normalize(join(module, '..', match[1]!)).replace(/\.js$/, '.ts');
    if (!target.startsWith('generated')) found.add(target);
  }
  return [...found];
}

const structure = suite('structure of lib/');

structure('every module is on the map in docs/architecture.md', () => {
  const map = readFileSync(join(ROOT, 'docs', 'architecture.md'), 'utf8');
  const missing = modules().filter((module) => {
    const name = module.startsWith('cli/') ? 'cli/' : module;
    return !map.includes(`\`${name}\``);
  });
  assert.equal(missing, [], `not on the map: ${missing.join(', ')}`);
});

structure('no import cycle', () => {
  const graph = new Map(modules().map((module) => [module, importsOf(module)]));
  const state = new Map<string, 'visiting' | 'done'>();
  const cycles: string[] = [];
  const visit = (module: string, path: string[]): void => {
    if (state.get(module) === 'done') return;
    if (state.get(module) === 'visiting') {
      cycles.push([...path.slice(path.indexOf(module)), module].join(' -> '));
      return;
    }
    state.set(module, 'visiting');
    for (const target of graph.get(module) ?? []) visit(target, [...path, module]);
    state.set(module, 'done');
  };
  for (const module of graph.keys()) visit(module, []);
  assert.equal(cycles, []);
  // The check can fail: the graph it walks is not empty and has edges.
  assert.ok([...graph.values()].some((targets) => targets.length > 0));
});

structure(`no module over ${MAX_LINES} lines`, () => {
  const long = modules()
    .map((module) => ({ module, lines: readFileSync(join(LIB, module), 'utf8').split('\n').length }))
    .filter(({ lines }) => lines > MAX_LINES)
    .map(({ module, lines }) => `${module}: ${lines}`);
  assert.equal(long, []);
});

structure.run();
