/**
 * Every reach into ioredis internals, in one place: what to check when ioredis is upgraded.
 * `spec/internals.test.ts` fails loudly if a release changes any of them.
 *
 * - `client.stream`: the socket of a standalone connection, corked to coalesce writes.
 * - `cluster.slots`: the Cluster's slot table, `slots[slot][0]` the `host:port` of the primary
 *   ioredis sends the slot's commands to (a MOVED reply updates it at once).
 * - `node.asking()`: called by a Cluster right before it sends an ASK-redirected command over that
 *   node's connection (which its slot table does not record).
 * - `client.stream =`: ioredis assigns each new socket of a connection to `stream`; `guardSockets`
 *   turns the property into an accessor to see each one (and the Cluster's `+node` event to see
 *   each node connection).
 */
import type { Writable } from 'node:stream';

/** The socket of a standalone ioredis connection, if it has one that can be corked. */
export function socketOf(client: object): Writable | undefined {
  const stream = (client as { stream?: Writable }).stream;
  return stream !== undefined && typeof stream.cork === 'function' ? stream : undefined;
}

/** The `host:port` of the primary an ioredis Cluster sends `slot`'s commands to, if known. */
export function slotPrimaryAddress(cluster: object, slot: number): string | undefined {
  const slots = (cluster as { slots?: Array<string[] | undefined> }).slots;
  return slots?.[slot]?.[0];
}

/**
 * Calls `onAsking` whenever ioredis sends ASKING on this Cluster node connection. Returns false
 * when the node has no `asking` method to hook (ioredis-mock, or a changed ioredis).
 */
export function hookAsking(node: object, onAsking: () => void): boolean {
  const methods = node as { asking?: (...args: unknown[]) => unknown };
  const asking = methods.asking;
  if (typeof asking !== 'function') return false;
  methods.asking = (...args: unknown[]) => {
    onAsking();
    return asking.apply(node, args);
  };
  return true;
}

const guarded = new WeakSet<object>();

/** Ignores a socket error: ioredis has its own listener for the one it acts on. */
function ignoreSocketError(): void {
  // Nothing to do: see guardSockets.
}

/**
 * Gives every socket of an ioredis connection an `error` listener of its own, so that an error
 * ioredis does not listen for cannot crash the process. ioredis listens for a socket's first error
 * only (`stream.once('error')`, in ioredis 5 and 6 alike), and a TLS socket can emit two: the
 * handshake's alert (emitted directly), then the reset that follows it (through `destroy`); the
 * second was an unhandled `error` event that ended the process (seen in `spec/tls.test.ts` under
 * load; ioredis pull request #961). ioredis still handles the first as before. For a Cluster, each
 * node connection is guarded as the Cluster makes it; ioredis-mock has no sockets.
 */
export function guardSockets(client: object): void {
  if (guarded.has(client)) return;
  guarded.add(client);
  const cluster = client as { isCluster?: boolean; on?: (event: string, listener: (node: object) => void) => void };
  if (cluster.isCluster === true) {
    cluster.on?.('+node', (node) => guardSockets(node));
    return;
  }
  let current = (client as { stream?: unknown }).stream;
  const guard = (stream: unknown): void => {
    const socket = stream as { on?: (event: string, listener: () => void) => void } | undefined;
    if (typeof socket?.on === 'function') socket.on('error', ignoreSocketError);
  };
  guard(current);
  Object.defineProperty(client, 'stream', {
    configurable: true,
    enumerable: true,
    get: () => current,
    set: (stream: unknown) => {
      if (stream !== current) guard(stream);
      current = stream;
    },
  });
}
