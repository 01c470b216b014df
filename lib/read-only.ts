/**
 * The read scripts (`head`, `scan`, `leaseRead`) as read-only commands: on a server that has them
 * (Redis >= 7.0, Valkey) they run with `EVAL_RO` on a client's first call of each, `EVALSHA_RO` after (`EVAL_RO`
 * again on NOSCRIPT), instead of ioredis's EVAL/EVALSHA. Two reasons:
 *
 * - ACL: Redis checks the keys an `EVAL`/`EVALSHA` declares for read *and* write access, so a user
 *   with read access only (`%R~prefix:*`) is refused them; `EVAL_RO`/`EVALSHA_RO` need only read
 *   access, and are commands a read-only user can be given without being able to write.
 * - The server itself refuses a write from a script run this way, whatever the script says.
 *
 * The scripts need no `#!lua flags=no-writes` header for that (measured on Redis 7.0.15: a script
 * without one runs under `EVAL_RO`, and a write in it is refused), so the same sources still run
 * with EVAL on Redis 5 and 6, which reject a header, and on ioredis-mock.
 *
 * Whether a server has the commands is learned from the first read: Redis 5 and 6 answer
 * `ERR unknown command` before running anything, and from then on that client's reads use the
 * scripts ioredis defined (EVALSHA, EVAL). That costs one refused command per client on an old
 * server and nothing on a new one, and needs no INFO (a client passed in is never asked for it).
 * ioredis-mock, and a Cluster that sends read-only commands to replicas (`scaleReads` other than
 * `master`: a replica may be behind, and `head` must see the latest commit), keep the defined
 * scripts too.
 */
import { createHash } from 'node:crypto';
import { isConnection } from './client.js';
import type { RedisClient } from './client.js';
import { callScript, SCRIPTS } from './scripts.js';
import type { ScriptArgs, ScriptName } from './scripts.js';

/** The scripts that only read. */
export type ReadScriptName = Extract<ScriptName, 'head' | 'scan' | 'leaseRead'>;

/** Whether a script only reads: it runs as a read-only command where the server has them. */
export function isReadScript(script: ScriptName): script is ReadScriptName {
  return script === 'head' || script === 'scan' || script === 'leaseRead';
}

/** Per client: whether its server runs EVALSHA_RO (absent until its first read says). */
const serverHasReadOnly = new WeakMap<object, boolean>();

/**
 * Per client: the read scripts already sent to its server with EVAL_RO. As ioredis does for the
 * scripts it defines, a client's first call of a script sends the script itself (which caches it
 * on the server), later calls its SHA1: one request either way, where EVALSHA_RO first would cost
 * a NOSCRIPT and a second request on a server that has not seen the script.
 */
const sent = new WeakMap<object, Set<ReadScriptName>>();

/** Each read script's SHA1, as EVALSHA_RO names it. */
const shas = new Map<ReadScriptName, string>();

function shaOf(script: ReadScriptName): string {
  let sha = shas.get(script);
  if (sha === undefined) {
    sha = createHash('sha1').update(SCRIPTS[script].lua).digest('hex');
    shas.set(script, sha);
  }
  return sha;
}

/** Whether `client`'s reads may go as read-only commands (unless its server lacks them). */
function mayUseReadOnly(client: RedisClient): boolean {
  if (!isConnection(client) || typeof client.callBuffer !== 'function') return false;
  if (client.isCluster === true) {
    const scaleReads = (client.options as { scaleReads?: unknown } | undefined)?.scaleReads;
    return scaleReads === undefined || scaleReads === 'master';
  }
  return true;
}

/** Redis 5 and 6's answer to EVAL_RO and EVALSHA_RO (`ERR unknown command `EVAL_RO`, with args...`). */
const UNKNOWN_COMMAND = /^ERR unknown command/i;

/**
 * Calls a read script on `client`: with EVALSHA_RO (EVAL_RO on NOSCRIPT) where the server has
 * them, else as `callScript` does. Replies are Buffers, as from the `...Buffer` variants.
 */
export function callReadScript<T>(client: RedisClient, script: ReadScriptName, args: ScriptArgs): Promise<T> {
  const known = serverHasReadOnly.get(client);
  if (known === false || !mayUseReadOnly(client)) return callScript<T>(client, script, args);
  const { lua, numberOfKeys } = SCRIPTS[script];
  let scripts = sent.get(client);
  if (scripts === undefined) {
    scripts = new Set();
    sent.set(client, scripts);
  }
  const first = !scripts.has(script);
  scripts.add(script);
  const request = first
    ? client.callBuffer!('EVAL_RO', lua, numberOfKeys, ...args) as Promise<T>
    : client.callBuffer!('EVALSHA_RO', shaOf(script), numberOfKeys, ...args) as Promise<T>;
  const recover = (err: unknown): Promise<T> => {
    const message = err instanceof Error ? err.message : '';
    // The server lost its script cache (a restart, SCRIPT FLUSH), or another Cluster node never had it.
    if (message.startsWith('NOSCRIPT')) return client.callBuffer!('EVAL_RO', lua, numberOfKeys, ...args) as Promise<T>;
    if (UNKNOWN_COMMAND.test(message)) {
      serverHasReadOnly.set(client, false);
      return callScript<T>(client, script, args);
    }
    throw err;
  };
  // Known to have them (nearly always): no extra step on success.
  if (known === true) return request.catch(recover);
  return request.then((reply) => {
    serverHasReadOnly.set(client, true);
    return reply;
  }, recover);
}
