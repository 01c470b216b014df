/**
 * ioredis 6 speaks RESP3 by default. A user's client made with its defaults (or with RESP3 reply
 * mapping) must carry payloads byte for byte, and the library's own connections stay on RESP2 as
 * they were tested. Runs when ioredis 6 is installed: `npm run test:ioredis6` (which `.ci/run`
 * runs) makes a side install of it for this file alone; `npm run use-ioredis -- 6` switches the
 * whole checkout. On ioredis 5 it says so in one line and registers nothing; with
 * REQUIRE_IOREDIS6=1 (set by `npm run test:ioredis6`) that is a failure instead.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createRequire } from 'node:module';
import { Redis } from 'ioredis';
import { CaSResult, RedisConsensus } from '../lib/index.js';
import { deletePrefix, freshPrefix, REDIS_URL, realRedisAvailable } from './support/backends.js';

const { version } = createRequire(import.meta.url)('ioredis/package.json') as { version: string };
const onIoredis6 = Number(version.split('.')[0]) >= 6;
const EVERY_BYTE = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const test = suite(`ioredis 6 (installed: ${version})`);

let available = false;
test.before(async () => {
  available = await realRedisAvailable();
});

if (!onIoredis6) {
  if (process.env['REQUIRE_IOREDIS6'] === '1') throw new Error(`REQUIRE_IOREDIS6=1 but ioredis ${version} is what loads`);
  // Not registered rather than passing vacuously: the count of tests run says what was checked.
  console.warn(`!!! SKIPPING the ioredis 6 suite: ioredis ${version} is installed here; ` +
    '`npm run test:ioredis6` runs it against a side install of ioredis 6 (as .ci/run does) !!!');
}

for (const replyMapping of onIoredis6 ? ['legacy', 'resp3'] as const : []) {
  test(`a default RESP3 client passed in (replyMapping ${replyMapping}) carries every byte value and empty payloads exactly`, async () => {
    if (!available) return;
    const prefix = freshPrefix('resp3');
    // `replyMapping` is an ioredis 6 option; ioredis 5's types do not know it.
    const client = new Redis(REDIS_URL, { replyMapping } as Record<string, unknown>);
    const consensus = new RedisConsensus(client, { prefix });
    try {
      assert.match(String(await client.client('INFO')), /\bresp=3\b/, 'the client speaks RESP3');
      assert.is(await consensus.compareAndSet('k', null, { seqno: 0n, data: EVERY_BYTE }), CaSResult.Committed);
      assert.is(await consensus.compareAndSet('k', 0n, { seqno: 1n, data: new Uint8Array() }), CaSResult.Committed);
      const head = await consensus.head('k');
      assert.is(head?.seqno, 1n);
      assert.is(head?.data.length, 0);
      const versions = await consensus.scan('k', 0n, 10);
      assert.equal(versions.map((v) => v.seqno), [0n, 1n]);
      assert.ok(Buffer.from(versions[0]!.data).equals(EVERY_BYTE), 'all 256 byte values come back in order');
      assert.is(versions[1]!.data.length, 0);
      assert.is(await consensus.compareAndSet('k', 0n, { seqno: 2n, data: EVERY_BYTE }), CaSResult.ExpectationMismatch);
      assert.is(await consensus.truncate('k', 1n), 1);
      const keys: string[] = [];
      for await (const key of consensus.listKeys()) keys.push(key);
      assert.equal(keys, ['k']);
    } finally {
      await consensus.close();
      await deletePrefix(client, prefix);
      await client.quit();
    }
  });
}

if (onIoredis6) test('the library\'s own connection stays on RESP2 under ioredis 6', async () => {
  if (!available) return;
  const name = `rc-resp-${process.pid}-${Date.now().toString(36)}`;
  const consensus = await RedisConsensus.connect(REDIS_URL, { prefix: freshPrefix('resp2') }, { connectionName: name });
  const raw = new Redis(REDIS_URL);
  try {
    await consensus.ping();
    const line = String(await raw.client('LIST')).split('\n').find((entry) => entry.includes(` name=${name} `));
    assert.ok(line, `a connection named ${name}`);
    assert.match(line, /\bresp=2\b/);
  } finally {
    await consensus.close();
    await raw.quit();
  }
});

// A suite with nothing registered would print "(0 / 0)".
if (onIoredis6) test.run();
