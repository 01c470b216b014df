/**
 * Every reach into ioredis internals, in one place: what to check when ioredis is upgraded.
 * `spec/internals.test.ts` fails loudly if a release changes any of them.
 *
 * - `client.stream`: the socket of a standalone connection, corked to coalesce writes.
 * - `cluster.slots`: the Cluster's slot table, `slots[slot][0]` the `host:port` of the primary
 *   ioredis sends the slot's commands to (a MOVED reply updates it at once).
 * - `node.asking()`: called by a Cluster right before it sends an ASK-redirected command over that
 *   node's connection (which its slot table does not record).
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
