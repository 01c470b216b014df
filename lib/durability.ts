/**
 * Durability: after a write that changed something, wait (Redis `WAIT`) until enough replicas
 * have it, or report the write indeterminate: it committed on the primary, but a failover may
 * lose it.
 *
 * `WAIT` counts the replicas that have every write so far *of the connection it is sent on*, so
 * it must go over the connection that carried the write. Standalone, that is the write
 * connection; on a Cluster, the connection to the primary serving the key's slot, and any other
 * the write may have taken (the slot's primary may change, or the write be redirected with ASK,
 * between the write and the WAIT): the fewest acknowledgements count.
 */
import { AskingLog, primaryFor } from './cluster.js';
import type { RedisClient } from './client.js';
import { indeterminate } from './errors.js';
import type { Link } from './link.js';
import type { DurabilityOptions } from './types.js';

/** Where a write may run, noted just before it is sent. */
export interface WriteMark {
  /** The point of the Cluster's ASKING log. */
  readonly asked: number;
  /** The connection to the slot's primary then. */
  readonly primary: RedisClient | undefined;
}

const STANDALONE: WriteMark = { asked: 0, primary: undefined };

export class Durability {
  /** Cluster writers: which nodes were sent ASKING, for WAIT after ASK redirects. */
  private readonly asking: AskingLog | undefined;

  constructor(private readonly link: Link, private readonly options: Required<DurabilityOptions>) {
    this.asking = link.writer.isCluster ? new AskingLog(link.writer) : undefined;
  }

  /** Notes where a write to `routingKey`, about to be sent, may run: pass it to `acknowledged`. */
  mark(routingKey: string): WriteMark {
    if (this.asking === undefined) return STANDALONE;
    let primary: RedisClient | undefined;
    try {
      primary = primaryFor(this.link.writer, routingKey);
    } catch {
      primary = undefined;
    }
    return { asked: this.asking.now(), primary };
  }

  /**
   * Waits until the configured number of replicas have the write just made to `routingKey`.
   * @throws ExternalError (indeterminate) when too few acknowledge in time, or WAIT fails.
   */
  async acknowledged(what: string, routingKey: string, mark: WriteMark): Promise<void> {
    const { replicas, timeoutMs } = this.options;
    const acknowledged = await this.waitForReplicas(what, routingKey, mark);
    if (acknowledged < replicas) {
      throw indeterminate('replicas-short',
        `${what} committed on the primary but only ${acknowledged} of ${replicas} replicas ` +
        `acknowledged it within ${timeoutMs} ms; a failover may lose it`);
    }
  }

  private async waitForReplicas(what: string, routingKey: string, mark: WriteMark): Promise<number> {
    const { replicas, timeoutMs } = this.options;
    const connections = new Set<RedisClient>();
    try {
      if (this.asking === undefined) {
        connections.add(this.link.writer);
      } else {
        connections.add(primaryFor(this.link.writer, routingKey));
        if (mark.primary !== undefined) connections.add(mark.primary);
        for (const node of this.asking.since(mark.asked)) connections.add(node);
      }
      // Through the Link, for its deadline and its watch: a WAIT in flight when a connection that
      // reconnects closes is dropped by ioredis and would otherwise never settle. Not retried: a
      // second WAIT would count a later point of the connection.
      const budgetMs = timeoutMs + 1000;
      const counts = await Promise.all([...connections].map((connection) =>
        this.link.runOnce(connection, 'WAIT', budgetMs, (client) => client.call!('WAIT', replicas, timeoutMs))));
      return Math.min(...counts.map(Number));
    } catch (err) {
      throw indeterminate('replicas-short', `${what} committed on the primary, but waiting for replicas failed: ${(err as Error).message}`, err);
    }
  }
}
