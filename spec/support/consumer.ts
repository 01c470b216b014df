/**
 * A project that uses redis-consensus the way a user's would: the package as `npm pack` makes it,
 * unpacked into `<tmp>/node_modules/redis-consensus`, with no network. Its dependencies (ioredis,
 * ioredis-mock, prom-client, type definitions) are symlinks to this repository's node_modules, so
 * the consumer runs whichever ioredis major is installed here.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const run = promisify(execFile);
export const root = fileURLToPath(new URL('../../../', import.meta.url));
const TSC = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

/** What a consumer may import besides redis-consensus itself. */
const DEPENDENCIES = ['ioredis', 'ioredis-mock', 'prom-client', '@types/node', '@types/ioredis-mock'];

export interface ConsumerRoot {
  /** The directory whose node_modules holds the package; consumers are its subdirectories. */
  readonly dir: string;
  /** The files `npm pack` put in the package, relative to its root. */
  readonly files: readonly string[];
  /** A subdirectory with these files in it (paths relative to it). */
  project(name: string, files: Record<string, string>): string;
  /** Removes everything. */
  remove(): void;
}

/**
 * Packs the built package (`dist/` must be built: `npm test` builds it first) and unpacks it into
 * a fresh consumer root under the system's temporary directory.
 */
export async function consumerRoot(label: string): Promise<ConsumerRoot> {
  const dir = mkdtempSync(join(tmpdir(), `redis-consensus-${label}-`));
  try {
    // --ignore-scripts: prepack would rebuild dist/, which the test command has just built.
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir],
      { cwd: root, maxBuffer: 16 << 20 });
    const [packed] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const unpacked = join(dir, 'node_modules', 'redis-consensus');
    mkdirSync(unpacked, { recursive: true });
    await run('tar', ['-xzf', join(dir, packed!.filename), '-C', unpacked, '--strip-components=1']);
    for (const name of DEPENDENCIES) {
      mkdirSync(dirname(join(dir, 'node_modules', name)), { recursive: true });
      symlinkSync(join(root, 'node_modules', name), join(dir, 'node_modules', name), 'dir');
    }
    return {
      dir,
      files: packed!.files.map((file) => file.path),
      project(name, files) {
        const project = join(dir, name);
        for (const [path, text] of Object.entries(files)) {
          mkdirSync(dirname(join(project, path)), { recursive: true });
          writeFileSync(join(project, path), text);
        }
        return project;
      },
      remove() {
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Type-checks and compiles a TypeScript project with this repository's compiler. */
export async function tsc(project: string): Promise<void> {
  try {
    await run(process.execPath, [TSC, '-p', project], { cwd: project });
  } catch (err) {
    const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string };
    throw new Error(`tsc -p ${project} failed:\n${stdout}${stderr}`);
  }
}

/** Runs a program with Node; its stdout, or an error carrying its output. */
export async function node(file: string, env: Record<string, string>, cwd = dirname(file)): Promise<string> {
  try {
    const { stdout, stderr } = await run(process.execPath, [file],
      { cwd, env: { ...process.env, ...env }, timeout: 20_000 });
    if (stderr !== '') throw Object.assign(new Error('wrote to stderr'), { stdout, stderr });
    return stdout;
  } catch (err) {
    const { stdout = '', stderr = '', message } = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`node ${file}: ${message}\n${stdout}${stderr}`);
  }
}
