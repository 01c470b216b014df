/**
 * Write coalescing on the connections the library owns.
 *
 * ioredis writes every command to its socket at once: one `write` system call per command. A
 * worker with many calls in flight issues them in bursts (replies arrive together, and each
 * settled call starts the next); measured with `npm run bench`, those system calls were the
 * largest client cost of a compare-and-set. So within one tick the first command is written at
 * once (Redis can start on it while this process encodes the rest), the socket is then corked,
 * and the commands after it leave in `writev`s of FLUSH_EVERY, the last ones when the tick ends.
 * Holding a whole burst back instead would serialise this process and Redis: at 16 calls in
 * flight that halved compareAndSet throughput; flushing every 8 after an immediate first doubled
 * it back (A/B in one process, 61k -> 113k/s), and at 64 in flight it matches or beats the rest.
 *
 * Unlike ioredis's `enableAutoPipelining` it adds no pipeline object per burst and no wait for an
 * earlier burst's replies, and each command stays an ordinary command of the connection: a
 * connection that breaks fails exactly the same commands in the same way. A call alone in its
 * tick is written at once, as without coalescing.
 */
import type { Writable } from 'node:stream';
import { socketOf } from './internals.js';

/** Commands per write after the first of a tick. */
const FLUSH_EVERY = 8;

/**
 * Commands sent on each socket in this tick: 1 after the first (written at once), then the
 * number held back plus one while the socket is corked.
 */
const sent = new WeakMap<Writable, number>();

function endOfTick(stream: Writable): void {
  const count = sent.get(stream)!;
  sent.delete(stream);
  if (count > 1) stream.uncork();
}

/**
 * Call just before sending a command on `client`: see above. A no-op for clients without a
 * socket of their own (ioredis-mock, a Cluster).
 */
export function coalesceWrites(client: object): void {
  const stream = socketOf(client);
  if (stream === undefined) return;
  const count = sent.get(stream);
  if (count === undefined) {
    sent.set(stream, 1);
    process.nextTick(endOfTick, stream);
  } else if (count === 1) {
    stream.cork();
    sent.set(stream, 2);
  } else if (count > FLUSH_EVERY) {
    stream.uncork();
    stream.cork();
    sent.set(stream, 2);
  } else {
    sent.set(stream, count + 1);
  }
}
