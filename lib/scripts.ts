/**
 * Script loading: reads `lua/*.lua`, resolves `--- @include "..."` lines, and defines each script
 * on an ioredis client with `defineCommand` (EVALSHA, with EVAL when Redis answers NOSCRIPT, e.g.
 * after SCRIPT FLUSH or a restart).
 */
import { readFileSync } from 'node:fs';

/** The scripts, by the name of their file in `lua/` (which ends in their number of keys). */
const FILES = {
  head: 'head-2',
  compareAndSet: 'compareAndSet-3',
  scan: 'scan-2',
  truncate: 'truncate-2',
} as const;

export type ScriptName = keyof typeof FILES;

/**
 * Each script's command names: `name`, unlikely to clash with the user's own `defineCommand`s on
 * a shared client, and the `...Buffer` variant ioredis adds. Built once: they are looked up on
 * every call.
 */
export const COMMANDS = Object.fromEntries(Object.keys(FILES).map((script) => {
  const name = `redisConsensus_${script}_v1`;
  return [script, { name, buffer: `${name}Buffer` }];
})) as Readonly<Record<ScriptName, { readonly name: string; readonly buffer: string }>>;

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
    client.defineCommand(COMMANDS[script as ScriptName].name, definition);
  }
  defined.add(client);
}
