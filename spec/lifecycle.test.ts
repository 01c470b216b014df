/** Owning clients: connect, close, and clients the caller passes in. */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { CaSResult, ExternalError, RedisConsensus } from '../lib/index.js';
import { deletePrefix, freshPrefix, realRedisAvailable, REDIS_URL, rejection } from './support/backends.js';

/** Resolves once `client` has closed for good. */
async function ended(client: Redis): Promise<string> {
  if (client.status !== 'end') await Promise.race([once(client, 'end'), new Promise((r) => setTimeout(r, 2000))]);
  return client.status;
}

const test = suite('lifecycle');

test('calls after close() reject as determinate ExternalErrors', async () => {
  const consensus = new RedisConsensus(new RedisMock({ port: 39001 }));
  await consensus.close();
  await consensus.close();
  for (const call of [consensus.head('k'), consensus.compareAndSet('k', null, { seqno: 0n, data: Buffer.alloc(1) })]) {
    const err = await rejection(call);
    assert.instance(err, ExternalError);
    assert.is((err as ExternalError).determinate, true);
    assert.match((err as Error).message, /closed/);
  }
});

test('connect() to a port where nothing listens fails fast as a determinate ExternalError', async () => {
  const started = Date.now();
  const err = await rejection(RedisConsensus.connect('redis://127.0.0.1:1'));
  assert.instance(err, ExternalError);
  assert.is((err as ExternalError).determinate, true);
  // The reason, not ioredis's bare "Connection is closed."; never the password.
  assert.match((err as Error).message, /^determinate: could not connect to redis:\/\/127\.0\.0\.1:1: connect ECONNREFUSED/);
  const withPassword = await rejection(RedisConsensus.connect('redis://user:secret@127.0.0.1:1'));
  assert.match((withPassword as Error).message, /could not connect to redis:\/\/127\.0\.0\.1:1:/);
  assert.not.match((withPassword as Error).message, /secret/);
  assert.ok(Date.now() - started < 5000);
});

test('invalid options given to connect() leave no connection behind', async () => {
  if (!(await realRedisAvailable())) return;
  const err = await rejection(RedisConsensus.connect(REDIS_URL, { prefix: '{bad}' }));
  assert.instance(err, RangeError);
});

const real = await realRedisAvailable();

if (real) {
  test('close() quits a client made by connect()', async () => {
    const consensus = await RedisConsensus.connect(REDIS_URL, { prefix: freshPrefix('life') });
    const reader = (consensus as unknown as { link: { reader: Redis } }).link.reader;
    try {
      assert.is(reader.status, 'ready');
    } finally {
      await consensus.close();
    }
    assert.is(await ended(reader), 'end');
  });

  test('connect() passes ioredis options through, but never the ones that would re-send writes', async () => {
    const name = `rc-life-${process.pid}`;
    const consensus = await RedisConsensus.connect(REDIS_URL, { prefix: freshPrefix('life') },
      { connectionName: name, autoResendUnfulfilledCommands: true, enableOfflineQueue: true });
    try {
      const link = (consensus as unknown as { link: { reader: Redis; writer: Redis } }).link;
      assert.is(link.writer, link.reader);
      assert.is(link.writer.options.autoResendUnfulfilledCommands, false);
      assert.is(link.writer.options.enableOfflineQueue, false);
      assert.ok(String(await link.reader.client('LIST')).includes(`name=${name}`));
    } finally {
      await consensus.close();
    }
  });

  test('a client passed in is never quit; its writes go over a duplicate that never re-sends', async () => {
    const prefix = freshPrefix('life');
    const client = new Redis(REDIS_URL);
    const consensus = new RedisConsensus(client, { prefix });
    try {
      const link = (consensus as unknown as { link: { reader: Redis; writer: Redis } }).link;
      assert.is(link.reader, client);
      assert.is.not(link.writer, client);
      assert.is(link.writer.options.autoResendUnfulfilledCommands, false);
      assert.is(await consensus.compareAndSet('k', null, { seqno: 1n, data: Buffer.from('a') }), CaSResult.Committed);
      assert.is((await consensus.head('k'))?.seqno, 1n);
      await consensus.close();
      assert.is(await ended(link.writer), 'end');
      assert.is(await client.ping(), 'PONG');
      assert.is(client.status, 'ready');
    } finally {
      await consensus.close();
      await deletePrefix(client, prefix);
      await client.quit();
    }
  });

  test('a burst of calls waiting for a connection to be ready adds no listener per call', async () => {
    const client = new Redis(REDIS_URL, { lazyConnect: true, autoResendUnfulfilledCommands: false });
    const consensus = new RedisConsensus(client, { prefix: freshPrefix('life') });
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => { warnings.push(warning.name); };
    process.on('warning', onWarning);
    try {
      assert.is(client.status, 'wait');
      const heads = await Promise.all(Array.from({ length: 40 }, (_, i) => consensus.head(`k${i}`)));
      assert.ok(heads.every((head) => head === null));
      assert.is(client.listenerCount('ready') < 5, true, `${client.listenerCount('ready')} ready listeners`);
      await new Promise((resolve) => setImmediate(resolve));
      assert.not.ok(warnings.includes('MaxListenersExceededWarning'));
    } finally {
      process.off('warning', onWarning);
      await consensus.close();
      await client.quit();
    }
  });

  test('a client passed in that never re-sends carries writes itself', async () => {
    const client = new Redis(REDIS_URL, { autoResendUnfulfilledCommands: false });
    const consensus = new RedisConsensus(client, { prefix: freshPrefix('life') });
    try {
      const link = (consensus as unknown as { link: { reader: Redis; writer: Redis } }).link;
      assert.is(link.writer, client);
      await consensus.close();
      assert.is(await client.ping(), 'PONG');
    } finally {
      await consensus.close();
      await client.quit();
    }
  });
}

test.run();
