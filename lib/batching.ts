/**
 * Write coalescing on the connections the library owns.
 *
 * ioredis writes every command to its socket at once: one `write` system call per command. A
 * worker with many calls in flight issues them in bursts (replies arrive together, and each
 * settled call starts the next); measured with `npm run bench`, those system calls were the
 * largest client cost of a compare-and-set. Corking the socket on the first command of a tick and
 * uncorking it on the next tick sends the whole burst in one `writev`. Unlike ioredis's
 * `enableAutoPipelining` it adds no pipeline object per burst and no wait for an earlier burst's
 * replies, and each command stays an ordinary command of the connection: a connection that breaks
 * fails exactly the same commands in the same way. A call alone in its tick pays one cork/uncork.
 */
import type { Writable } from 'node:stream';

const corked = new WeakSet<Writable>();

function uncork(stream: Writable): void {
  corked.delete(stream);
  stream.uncork();
}

/**
 * Holds back writes to `client`'s socket until the end of this tick. A no-op for clients without a
 * socket of their own (ioredis-mock, a Cluster).
 */
export function coalesceWrites(client: object): void {
  const stream = (client as { stream?: Writable }).stream;
  if (stream === undefined || corked.has(stream) || typeof stream.cork !== 'function') return;
  corked.add(stream);
  stream.cork();
  process.nextTick(uncork, stream);
}
