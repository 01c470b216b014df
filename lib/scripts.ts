/**
 * Script loading: reads `lua/*.lua`, resolves `--- @include "..."` lines, and defines each script
 * on an ioredis client with `defineCommand` (EVALSHA, with EVAL when Redis answers NOSCRIPT, e.g.
 * after SCRIPT FLUSH or a restart). `runScript` runs them.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** The scripts, by the name of their file in `lua/` (which ends in their number of keys). */
const FILES = {
  head: 'head-2',
  compareAndSet: 'compareAndSet-3',
  scan: 'scan-2',
  truncate: 'truncate-2',
} as const;

export type ScriptName = keyof typeof FILES;

/** A command name unlikely to clash with the user's own `defineCommand`s on a shared client. */
export function commandName(script: ScriptName): string {
  return `redisConsensus_${script}_v1`;
}

const LUA_DIR = new URL('../../lua/', import.meta.url);
const INCLUDE = /^--- @include "([\w/-]+)"$/gm;

function readLua(name: string, seen: Set<string> = new Set()): string {
  if (seen.has(name)) return '';
  seen.add(name);
  const text = readFileSync(new URL(`${name}.lua`, LUA_DIR), 'utf8');
  return text.replace(INCLUDE, (_line, include: string) => readLua(include, seen));
}

/** The source of every script, includes resolved, read once. */
export const SCRIPTS: Readonly<Record<ScriptName, { lua: string; numberOfKeys: number }>> =
  Object.fromEntries(
    Object.entries(FILES).map(([script, file]) => [
      script,
      { lua: readLua(file), numberOfKeys: Number(file.slice(file.lastIndexOf('-') + 1)) },
    ]),
  ) as Record<ScriptName, { lua: string; numberOfKeys: number }>;

/** The part of an ioredis client (Redis, Cluster or ioredis-mock) that loading needs. */
export interface ScriptHost {
  /** Defines a Lua script as a command (ioredis `defineCommand`). */
  defineCommand(name: string, definition: { lua: string; numberOfKeys: number }): void;
}

const defined = new WeakSet<object>();

/** Defines every script on `client`, once per client. */
export function defineScripts(client: ScriptHost): void {
  if (defined.has(client)) return;
  for (const [script, definition] of Object.entries(SCRIPTS)) {
    client.defineCommand(commandName(script as ScriptName), definition);
  }
  defined.add(client);
}

/** Each script's SHA1 digest, as EVALSHA names it. */
const DIGESTS = Object.fromEntries(
  Object.entries(SCRIPTS).map(([script, { lua }]) => [script, createHash('sha1').update(lua).digest('hex')]),
) as Record<ScriptName, string>;

/** The script-running part of an ioredis connection or Cluster; ioredis-mock has no `status`. */
interface Evaluator {
  status?: string;
  evalshaBuffer(sha: string, numberOfKeys: number, ...args: (string | Buffer)[]): Promise<unknown>;
  evalBuffer(lua: string, numberOfKeys: number, ...args: (string | Buffer)[]): Promise<unknown>;
}

/**
 * Runs a script with `args` (its keys, then its arguments). On ioredis, EVALSHA, and EVAL when
 * Redis answers NOSCRIPT (after SCRIPT FLUSH, a restart or a failover): NOSCRIPT means the script
 * did not run, so sending it again cannot apply a write twice. That is what the defined command
 * does too, but without its per-call wrapping, which measurably cost (~0.5 us of ~7 us of client
 * CPU per compareAndSet at 64 in flight). Replies come as Buffers (ioredis would otherwise decode
 * them as UTF-8, corrupting binary payloads). ioredis-mock, which has no script cache, runs the
 * command `defineScripts` defined (it already hands binary values back as Buffers).
 */
export function runScript<T>(client: ScriptHost, script: ScriptName, args: (string | Buffer)[]): Promise<T> {
  const evaluator = client as unknown as Evaluator;
  const { numberOfKeys, lua } = SCRIPTS[script];
  if (evaluator.status === undefined) {
    const command = commandName(script);
    const methods = client as unknown as Record<string, (...a: (string | Buffer)[]) => Promise<T>>;
    return (methods[`${command}Buffer`] ?? methods[command]!).apply(client, args);
  }
  return evaluator.evalshaBuffer(DIGESTS[script], numberOfKeys, ...args).catch((err: unknown) => {
    if (err instanceof Error && err.message.startsWith('NOSCRIPT')) {
      return evaluator.evalBuffer(lua, numberOfKeys, ...args);
    }
    throw err;
  }) as Promise<T>;
}
