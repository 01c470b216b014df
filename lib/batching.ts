/**
 * Write coalescing on the connections the library owns.
 *
 * ioredis writes every command to its socket at once: one `write` system call per command. A
 * worker with many calls in flight issues them in bursts (replies arrive together, and each
 * settled call starts the next); measured with `npm run bench`, those system calls were the
 * largest client cost of a compare-and-set. Corking the socket on the first command of a tick and
 * uncorking it on the next tick sends a burst in few `writev`s. A long burst is still flushed every
 * FLUSH_EVERY commands, so Redis starts running the first scripts while this process is still
 * encoding the rest: holding a whole burst back would serialise the two.
 *
 * Unlike ioredis's `enableAutoPipelining` it adds no pipeline object per burst and no wait for an
 * earlier burst's replies, and each command stays an ordinary command of the connection: a
 * connection that breaks fails exactly the same commands in the same way. A call alone in its
 * tick pays one cork/uncork.
 */
import type { Writable } from 'node:stream';

/** Commands per write in a long burst. */
const FLUSH_EVERY = 16;

/** Commands held back on each corked socket. */
const held = new WeakMap<Writable, number>();

function uncork(stream: Writable): void {
  held.delete(stream);
  stream.uncork();
}

/**
 * Holds back writes to `client`'s socket until the end of this tick, or until FLUSH_EVERY
 * commands wait. Call it just before sending a command. A no-op for clients without a socket of
 * their own (ioredis-mock, a Cluster).
 */
export function coalesceWrites(client: object): void {
  const stream = (client as { stream?: Writable }).stream;
  if (stream === undefined || typeof stream.cork !== 'function') return;
  const waiting = held.get(stream);
  if (waiting === undefined) {
    held.set(stream, 1);
    stream.cork();
    process.nextTick(uncork, stream);
  } else if (waiting >= FLUSH_EVERY) {
    stream.uncork();
    stream.cork();
    held.set(stream, 1);
  } else {
    held.set(stream, waiting + 1);
  }
}
