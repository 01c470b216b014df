/**
 * A byte-exact picture of everything stored under a prefix, to check that a call changed
 * nothing. It reads raw Redis keys on purpose: it is a test's independent view of the store.
 */
import type { Redis } from 'ioredis';

export async function snapshot(raw: Redis, prefix: string): Promise<string> {
  const names: string[] = [];
  let cursor = '0';
  do {
    const [next, page] = await raw.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    names.push(...page);
    cursor = next;
  } while (cursor !== '0');
  names.sort();
  const parts: string[] = [];
  for (const name of names) {
    const type = await raw.type(name);
    let content: unknown;
    // Through a script: ioredis-mock 8 on ioredis 6 fails every ZRANGE call (it runs ioredis 6's
    // reply transformer without its context), while its Lua ZRANGE works.
    if (type === 'zset') content = await raw.eval("return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')", 1, name);
    else if (type === 'hash') {
      const entries = Object.entries(await raw.hgetallBuffer(name));
      content = entries.sort(([a], [b]) => (a < b ? -1 : 1)).map(([field, value]) => [field, value.toString('hex')]);
    } else if (type === 'set') content = (await raw.smembers(name)).sort();
    else content = type;
    parts.push(JSON.stringify([name, type, content]));
  }
  return parts.join('\n');
}
