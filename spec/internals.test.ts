/**
 * The ioredis internals the library reads (lib/internals.ts), checked against the installed
 * ioredis so that an upgrade that changes one fails here, by name. The Cluster ones (slot table,
 * ASKING hook) are checked in cluster.test.ts, on a real Cluster.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Redis } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { socketOf } from '../lib/internals.js';
import { REDIS_URL, realRedisAvailable } from './support/backends.js';

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

test('ioredis-mock has no socket: coalescing leaves it alone', () => {
  assert.is(socketOf(new RedisMock({ port: 39_701 })), undefined);
});

test.run();
