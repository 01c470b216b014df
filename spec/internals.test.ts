/**
 * The ioredis internals the library reads (lib/internals.ts), checked against the installed
 * ioredis so that an upgrade that changes one fails here, by name. The Cluster ones (slot table,
 * ASKING hook) are checked in cluster.test.ts, on a real Cluster.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Redis } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { once } from 'node:events';
import { CaSResult, RedisConsensus } from '../lib/index.js';
import { guardSockets, socketOf } from '../lib/internals.js';
import { deletePrefix, freshPrefix, REDIS_URL, realRedisAvailable } from './support/backends.js';

const test = suite('ioredis internals');

if (await realRedisAvailable()) {
  test('a ready standalone connection exposes its socket as `stream`, which can be corked', async () => {
    const client = new Redis(REDIS_URL);
    try {
      await client.ping();
      const socket = socketOf(client);
      assert.ok(socket !== undefined, 'client.stream is a corkable socket');
      socket.cork();
      assert.is(socket.writableCorked, 1);
      socket.uncork();
      assert.is(socket.writableCorked, 0);
      assert.is(await client.ping(), 'PONG');
    } finally {
      await client.quit();
    }
  });
}

if (await realRedisAvailable()) {
  /** Emits two errors on a socket, as a TLS socket may (the alert, then the reset). */
  const twoErrors = (socket: NodeJS.EventEmitter): void => {
    socket.emit('error', new Error('first error (a TLS alert)'));
    socket.emit('error', new Error('second error (the reset after it)'));
  };

  test('ioredis listens for a socket\'s first error only: a second one is thrown (why guardSockets exists)', async () => {
    const client = new Redis(REDIS_URL);
    client.on('error', () => undefined);
    try {
      await client.ping();
      const socket = socketOf(client)!;
      socket.emit('error', new Error('first'));
      assert.throws(() => socket.emit('error', new Error('second')), /second/);
    } finally {
      client.disconnect();
    }
  });

  test('guardSockets: every socket of the connection, the ones after a reconnect too, survives a second error', async () => {
    const client = new Redis(REDIS_URL);
    client.on('error', () => undefined);
    guardSockets(client);
    try {
      await client.ping();
      const first = socketOf(client)!;
      twoErrors(first);
      const ready = once(client, 'ready');
      first.destroy();
      await ready;
      const second = socketOf(client)!;
      assert.ok(second !== first, 'a new socket after the reconnect');
      twoErrors(second);
      assert.is(await client.ping(), 'PONG');
    } finally {
      client.disconnect();
    }
  });

  test('a store\'s own connection survives a second socket error and goes on committing', async () => {
    const prefix = freshPrefix('guard');
    const consensus = await RedisConsensus.connect(REDIS_URL, { prefix });
    try {
      const writer = (consensus as unknown as { link: { writer: Redis } }).link.writer;
      twoErrors(socketOf(writer)!);
      assert.is(await consensus.compareAndSet('k', null, { seqno: 1n, data: Buffer.from('after') }), CaSResult.Committed);
    } finally {
      await consensus.close();
      const raw = new Redis(REDIS_URL);
      await deletePrefix(raw, prefix);
      raw.disconnect();
    }
  });
}

test('ioredis-mock has no socket: coalescing leaves it alone', () => {
  assert.is(socketOf(new RedisMock({ port: 39_701 })), undefined);
});

test.run();
