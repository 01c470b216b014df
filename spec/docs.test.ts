/**
 * The documentation stays true to the code: every name a user can reach is documented, and the
 * lists are read from the code itself, so that a new method, option, metric or flag fails here
 * until it is documented.
 *
 * - every public method of `RedisConsensus` (prototype and statics, by reflection) has a row in
 *   the README's API table;
 * - every field of `RedisConsensusOptions` (read from lib/types.ts with the TypeScript compiler)
 *   has a row in an Options table (README or docs/), and the fields of its object-typed options
 *   appear in that row;
 * - every metric `prometheusObserver` registers, each of its labels and every operation label
 *   value is in docs/metrics.md, and docs/metrics.md names no metric that is not registered;
 * - every command and every flag the CLI's help prints is in docs/cli.md, and its exit codes
 *   are documented with the numbers the code uses.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { OPERATIONS, RedisConsensus, prometheusObserver } from '../lib/index.js';
import type { PromClient, PromMetricConfiguration, PromRegistry } from '../lib/metrics.js';
import * as exits from '../lib/cli/args.js';
import { COMMANDS } from '../lib/cli/commands.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string): string => readFileSync(join(root, path), 'utf8');
const README = read('README.md');
const DOCS = readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md')).map((name) => read(`docs/${name}`));

/** The text of a `## ` section of a markdown file, up to the next one. */
function section(markdown: string, title: string): string {
  const start = markdown.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `a "## ${title}" section`);
  const end = markdown.indexOf('\n## ', start + 1);
  return markdown.slice(start, end < 0 ? undefined : end);
}

/** Table rows (`| ... |` lines) of a markdown text. */
const rows = (markdown: string): string[] => markdown.split('\n').filter((line) => line.startsWith('|'));

const test = suite('docs: true to the code');

test('every public method of RedisConsensus has a row in the README API table', () => {
  const source = read('lib/consensus.ts');
  const isPrivate = (name: string): boolean => new RegExp(`^\\s*private (static )?(async )?${name}\\b`, 'm').test(source);
  const methods = Object.getOwnPropertyNames(RedisConsensus.prototype).filter((name) => name !== 'constructor' && !isPrivate(name));
  const statics = Object.getOwnPropertyNames(RedisConsensus)
    .filter((name) => typeof (RedisConsensus as unknown as Record<string, unknown>)[name] === 'function' && !isPrivate(name));
  assert.ok(methods.length >= 12 && statics.length >= 2, `found ${methods.join(', ')}; static ${statics.join(', ')}`);
  const api = rows(section(README, 'API'));
  const missing = [
    ...methods.filter((name) => !api.some((row) => row.startsWith(`| \`${name}(`))),
    ...statics.filter((name) => !api.some((row) => row.startsWith(`| \`RedisConsensus.${name}(`))).map((name) => `RedisConsensus.${name}`),
    ...(api.some((row) => row.startsWith('| `new RedisConsensus(')) ? [] : ['new RedisConsensus']),
  ];
  assert.equal(missing, [], `not in the README's API table: ${missing.join(', ')}`);
});

/** The property names of an interface of lib/types.ts, read with the compiler (types do not exist at run time). */
function optionTree(): Map<string, string[]> {
  const file = ts.createSourceFile('types.ts', read('lib/types.ts'), ts.ScriptTarget.Latest, true);
  const interfaces = new Map<string, ts.InterfaceDeclaration>();
  file.forEachChild((node) => {
    if (ts.isInterfaceDeclaration(node)) interfaces.set(node.name.text, node);
  });
  const membersOf = (members: ts.NodeArray<ts.TypeElement>): ts.PropertySignature[] =>
    members.filter((member): member is ts.PropertySignature => ts.isPropertySignature(member));
  const fieldsOf = (type: ts.TypeNode | undefined): string[] => {
    if (type === undefined) return [];
    if (ts.isTypeLiteralNode(type)) return membersOf(type.members).map((member) => member.name.getText(file));
    if (ts.isIntersectionTypeNode(type)) return type.types.flatMap(fieldsOf);
    if (ts.isTypeReferenceNode(type)) {
      const declaration = interfaces.get(type.typeName.getText(file));
      // Hooks (methods) are not options: only property signatures count.
      return declaration === undefined ? [] : membersOf(declaration.members).map((member) => member.name.getText(file));
    }
    return [];
  };
  const options = interfaces.get('RedisConsensusOptions');
  assert.ok(options, 'interface RedisConsensusOptions in lib/types.ts');
  return new Map(membersOf(options.members).map((member) => [member.name.getText(file), fieldsOf(member.type)]));
}

test('every option of RedisConsensusOptions has a row in an Options table, with its fields in that row', () => {
  const tree = optionTree();
  assert.ok(tree.size >= 9, `found ${[...tree.keys()].join(', ')}`);
  const tableRows = [README, ...DOCS].flatMap(rows);
  const missing: string[] = [];
  for (const [option, fields] of tree) {
    const row = tableRows.find((line) => line.startsWith(`| \`${option}\` |`));
    if (row === undefined) {
      missing.push(option);
      continue;
    }
    for (const field of fields) if (!new RegExp(`\\b${field}\\b`).test(row)) missing.push(`${option}.${field}`);
  }
  assert.equal(missing, [], `not in an Options table: ${missing.join(', ')}`);
});

test('every metric prometheusObserver registers, its labels and the operation values are in docs/metrics.md', () => {
  const registered: Array<PromMetricConfiguration<PromRegistry>> = [];
  const record = class {
    constructor(configuration: PromMetricConfiguration<PromRegistry>) {
      registered.push(configuration);
    }
    inc(): void {}
    observe(): void {}
  };
  const registry: PromRegistry = { getSingleMetric: () => undefined };
  const fake: PromClient<PromRegistry> = { Counter: record, Histogram: record, register: registry };
  prometheusObserver(fake);
  assert.ok(registered.length >= 10, `${registered.length} metrics`);
  const page = read('docs/metrics.md');
  const missing: string[] = [];
  for (const { name, labelNames } of registered) {
    const row = rows(page).find((line) => line.startsWith(`| \`${name}\` |`));
    if (row === undefined) {
      missing.push(name);
      continue;
    }
    for (const label of labelNames) if (!row.includes(`\`${label}\``)) missing.push(`${name}{${label}}`);
    // A row with no labels says so, rather than leaving the cell empty.
    if (labelNames.length === 0 && !/\| none \|/.test(row)) missing.push(`${name}: "none" in its labels column`);
  }
  for (const operation of OPERATIONS) if (!page.includes(`\`${operation}\``)) missing.push(`operation="${operation}"`);
  assert.equal(missing, [], `not in docs/metrics.md: ${missing.join(', ')}`);
  const names = new Set(registered.map(({ name }) => name));
  const unknown = [...new Set(page.match(/\bredis_consensus_[a-z_]+/g) ?? [])]
    .filter((name) => !names.has(name) && !names.has(name.replace(/_(bucket|count|sum)$/, '')));
  assert.equal(unknown, [], `docs/metrics.md names metrics that are not registered: ${unknown.join(', ')}`);
});

const cli = async (...args: string[]): Promise<string> =>
  (await promisify(execFile)(process.execPath, [join(root, 'build', 'lib', 'cli', 'main.js'), ...args])).stdout;

test('every command and flag of the CLI help is in docs/cli.md, and its exit codes are the code\'s', async () => {
  const page = read('docs/cli.md');
  const helps = [await cli('--help'), ...await Promise.all(Object.keys(COMMANDS).map((name) => cli('help', name)))];
  // `--tls-*` in prose is a family, not a flag.
  const flags = new Set(helps.flatMap((text) => text.match(/(?<![\w-])--?[a-zA-Z][\w-]*\b(?!-)/g) ?? []));
  assert.ok(flags.has('--url') && flags.has('-h'), [...flags].join(' '));
  const missing = [...flags].filter((flag) => !new RegExp(`\`${flag}[\` =]`).test(page));
  for (const name of Object.keys(COMMANDS)) if (!rows(page).some((row) => row.startsWith(`| \`${name}`))) missing.push(`command ${name}`);
  assert.equal(missing, [], `not in docs/cli.md: ${missing.join(', ')}`);
  const codes = (Object.entries(exits) as Array<[string, unknown]>)
    .filter((entry): entry is [string, number] => entry[0].startsWith('EXIT_') && typeof entry[1] === 'number');
  // The help's table (EXIT_CODES) lists every exit code too.
  assert.equal(exits.EXIT_CODES.map(([code]) => code).sort(), codes.map(([, code]) => code).sort());
  assert.ok(codes.length >= 6);
  const exitRows = rows(section(page, 'Exit codes'));
  const undocumented = codes.filter(([, code]) => !exitRows.some((row) => row.startsWith(`| \`${code}\` |`)));
  assert.equal(undocumented, [], `exit codes without a row in docs/cli.md: ${undocumented.map(([name]) => name).join(', ')}`);
  const stale = exitRows.map((row) => /^\| `(\d+)` \|/.exec(row)?.[1]).filter((code) => code !== undefined)
    .filter((code) => !codes.some(([, value]) => String(value) === code));
  assert.equal(stale, [], `docs/cli.md documents exit codes the code has not: ${stale.join(', ')}`);
});

test.run();
