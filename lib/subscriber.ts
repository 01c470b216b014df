/**
 * The subscriber: the pub/sub connections a store owns for its watches, shared by all of them,
 * and the gaps in what they heard.
 *
 * Standalone and Sentinel: one connection, a `duplicate()` of the store's client (so a Sentinel
 * client's duplicate follows failovers too), with `SUBSCRIBE`. Cluster: one connection per primary
 * that serves a watched channel, with sharded `SSUBSCRIBE` (Redis >= 7), routed by a slot map read
 * with `CLUSTER SLOTS`.
 *
 * Pub/sub delivers at most once: whatever might have been missed is reported as a gap to the
 * listeners of the channels concerned, once their channel is subscribed again, so that they
 * re-read. A gap is: the connection closed and came back (a reconnect, a restart, a Sentinel
 * failover); on a Cluster also a node that closed, a slot that moved (Redis sends an unsolicited
 * `sunsubscribe`, which ioredis reports as an `error` event), or a MOVED reply to `SSUBSCRIBE`;
 * after each of those the slot map is read again and every channel re-routed.
 */
import { Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';
import { isConnection, optionsOf, quit } from './client.js';
import type { RedisClient } from './client.js';
import { keySlot } from './cluster.js';
import { guardSockets } from './internals.js';

/** What a watch hears on a channel. */
export interface ChannelListener {
  /** A message published on the channel, as bytes (an announcement may carry a binary payload). */
  message(message: Buffer): void;
  /** The channel was resubscribed after messages may have been missed: re-read. */
  gap(): void;
  /** The channel stopped being heard (its connection closed, its slot moved); a gap follows. */
  down(): void;
}

/** One listener's hold on a channel. */
export interface Subscription {
  /**
   * Settles once the channel is subscribed: every message published after that reaches the
   * listener, or a gap is reported. Never rejects.
   */
  readonly ready: Promise<void>;
  /** Whether the channel is subscribed on a connection that is up now. */
  readonly live: boolean;
  /** Stops listening; the channel is unsubscribed when its last listener goes. */
  close(): void;
}

/** The pub/sub side of a store: one per store, made on the first watch. */
export interface Subscriber {
  listen(channel: string, listener: ChannelListener): Subscription;
  /** Quits every connection; no gap is reported after this. */
  close(): Promise<void>;
}

/** Makes the subscriber for a store's client. */
export function openSubscriber(client: RedisClient): Subscriber {
  return client.isCluster ? new ClusterSubscriber(client) : new SingleSubscriber(client);
}

/** A subscribed channel: who listens, and on which connection. */
interface Channel {
  readonly name: string;
  readonly listeners: Set<ChannelListener>;
  /** The connection it is subscribed (or being subscribed) on. */
  node: Node | undefined;
  live: boolean;
  /** Whether it was ever live: the next time it becomes live is a gap. */
  wasLive: boolean;
  /** Resolves `ready` of the subscriptions made before it was first live. */
  readonly waiters: Array<() => void>;
}

/** One pub/sub connection. */
interface Node {
  readonly client: RedisClient & PubSubMethods;
  readonly channels: Set<Channel>;
}

/** The pub/sub methods of an ioredis connection (and ioredis-mock). */
interface PubSubMethods {
  subscribe(...channels: string[]): Promise<unknown>;
  unsubscribe(...channels: string[]): Promise<unknown>;
  ssubscribe(...channels: string[]): Promise<unknown>;
  sunsubscribe(...channels: string[]): Promise<unknown>;
}

/**
 * Options every subscriber connection gets: the library resubscribes itself, to know when; and no
 * `keyPrefix`: channel names come with the client's prefix already (ioredis would add it again to
 * SSUBSCRIBE's channels, which it treats as keys, though not to SUBSCRIBE's).
 */
const SUBSCRIBER_OPTIONS = {
  autoResubscribe: false, autoResendUnfulfilledCommands: false, enableOfflineQueue: true, lazyConnect: false,
  keyPrefix: '',
} as const;

/** What both kinds share: the channels, their listeners, and turning a subscription live. */
abstract class BaseSubscriber implements Subscriber {
  protected readonly channels = new Map<string, Channel>();
  protected closed = false;

  listen(channel: string, listener: ChannelListener): Subscription {
    let state = this.channels.get(channel);
    if (state === undefined) {
      state = { name: channel, listeners: new Set(), node: undefined, live: false, wasLive: false, waiters: [] };
      this.channels.set(channel, state);
      this.route(state);
    }
    const held = state;
    held.listeners.add(listener);
    const ready = held.live ? Promise.resolve() : new Promise<void>((resolve) => held.waiters.push(resolve));
    return {
      ready,
      get live() {
        return held.live;
      },
      close: () => {
        held.listeners.delete(listener);
        if (held.listeners.size > 0 || this.channels.get(held.name) !== held) return;
        this.channels.delete(held.name);
        this.drop(held);
      },
    };
  }

  abstract close(): Promise<void>;

  /** Subscribes a new channel on the connection it belongs to. */
  protected abstract route(channel: Channel): void;

  /** The command that subscribes on this kind of connection, and the one that unsubscribes. */
  protected abstract readonly verbs: { subscribe: 'subscribe' | 'ssubscribe'; unsubscribe: 'unsubscribe' | 'sunsubscribe' };

  /** Hands a message to the channel's listeners. */
  protected deliver(channel: string | Buffer, message: string | Buffer): void {
    const state = this.channels.get(String(channel));
    if (state === undefined) return;
    const bytes = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
    for (const listener of state.listeners) listener.message(bytes);
  }

  /** Sends the subscription of `channels` on `node`; each becomes live once Redis confirms it. */
  protected subscribe(node: Node, channels: Channel[], onFailure: (err: unknown) => void): void {
    if (channels.length === 0) return;
    for (const channel of channels) {
      channel.node = node;
      node.channels.add(channel);
    }
    node.client[this.verbs.subscribe](...channels.map((channel) => channel.name)).then(() => {
      for (const channel of channels) {
        if (this.closed || channel.node !== node || this.channels.get(channel.name) !== channel) continue;
        this.becameLive(channel);
      }
    }, onFailure);
  }

  private becameLive(channel: Channel): void {
    if (channel.live) return;
    channel.live = true;
    for (const resolve of channel.waiters.splice(0)) resolve();
    if (channel.wasLive) {
      for (const listener of channel.listeners) listener.gap();
    }
    channel.wasLive = true;
  }

  /** Marks every channel of a connection as no longer heard. */
  protected lost(node: Node): void {
    for (const channel of node.channels) this.down(channel);
  }

  /** Marks a channel as no longer heard, and tells its listeners. */
  protected down(channel: Channel): void {
    if (!channel.live) return;
    channel.live = false;
    for (const listener of channel.listeners) listener.down();
  }

  /** Unsubscribes a channel nobody listens to any more. */
  private drop(channel: Channel): void {
    const node = channel.node;
    channel.live = false;
    channel.node = undefined;
    for (const resolve of channel.waiters.splice(0)) resolve();
    if (node === undefined) return;
    node.channels.delete(channel);
    if (ready(node.client)) node.client[this.verbs.unsubscribe](channel.name).catch(() => undefined);
  }
}

/** Whether a connection takes commands now (ioredis-mock always does). */
function ready(client: RedisClient): boolean {
  return !isConnection(client) || client.status === 'ready';
}

/** Standalone or Sentinel: one duplicated connection, resubscribed on every reconnect. */
class SingleSubscriber extends BaseSubscriber {
  protected readonly verbs = { subscribe: 'subscribe', unsubscribe: 'unsubscribe' } as const;
  private readonly node: Node;

  constructor(client: RedisClient) {
    super();
    const duplicate = client.duplicate as ((options: object) => RedisClient) | undefined;
    if (typeof duplicate !== 'function') throw new TypeError('watch with pub/sub needs a client with duplicate()');
    const connection = duplicate.call(client, SUBSCRIBER_OPTIONS) as RedisClient & PubSubMethods;
    guardSockets(connection);
    this.node = { client: connection, channels: new Set() };
    // Bytes: a carried announcement may hold a binary payload. ioredis emits `messageBuffer` for
    // every message (and `message` too); ioredis-mock emits one of them, by the message's type.
    connection.on?.('messageBuffer', (channel, message) => this.deliver(channel as Buffer, message as Buffer));
    if (!isConnection(connection)) connection.on?.('message', (channel, message) => this.deliver(channel as string, message as string));
    connection.on?.('error', () => {
      // A reconnect follows; the channels are resubscribed on `ready`, and that is a gap.
    });
    connection.on?.('close', () => this.lost(this.node));
    connection.on?.('ready', () => this.resubscribe());
  }

  protected route(channel: Channel): void {
    if (ready(this.node.client)) this.subscribe(this.node, [channel], () => this.retryLater());
    else this.node.channels.add(channel);
  }

  private resubscribe(): void {
    if (this.closed) return;
    this.subscribe(this.node, [...this.node.channels], () => this.retryLater());
  }

  /** A subscribe refused on a live connection (rare: e.g. a LOADING server): try again shortly. */
  private retryLater(): void {
    setTimeout(() => {
      if (ready(this.node.client)) this.resubscribe();
    }, RETRY_MIN_MS).unref?.();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.lost(this.node);
    await quit(this.node.client);
  }
}

/** Delays between attempts to re-read the slot map and resubscribe on a Cluster. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 2000;

/** A Cluster: one sharded-subscriber connection per primary that serves a watched channel. */
class ClusterSubscriber extends BaseSubscriber {
  protected readonly verbs = { subscribe: 'ssubscribe', unsubscribe: 'sunsubscribe' } as const;
  private readonly nodes = new Map<string, Node>();
  /** Slot ranges and the address of the primary serving each, from CLUSTER SLOTS. */
  private slots: Array<[first: number, last: number, address: string]> | undefined;
  private resyncing = false;
  private resyncAgain = false;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly cluster: RedisClient) {
    super();
  }

  protected route(channel: Channel): void {
    if (this.slots === undefined) {
      this.resync();
      return;
    }
    const address = this.addressOf(channel.name);
    if (address === undefined) {
      this.resync();
      return;
    }
    this.subscribe(this.nodeAt(address), [channel], () => this.gapSeen());
  }

  /** Something may have moved or been missed: re-read the slot map and re-route every channel. */
  private gapSeen(): void {
    if (this.closed) return;
    this.failures++;
    if (this.timer !== undefined) return;
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(this.failures - 1, 6));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.resync();
    }, delay);
    this.timer.unref?.();
  }

  private resync(): void {
    if (this.closed) return;
    if (this.resyncing) {
      this.resyncAgain = true;
      return;
    }
    this.resyncing = true;
    this.readSlots().then(() => {
      this.failures = 0;
      this.reroute();
    }, () => this.gapSeen()).finally(() => {
      this.resyncing = false;
      if (this.resyncAgain) {
        this.resyncAgain = false;
        this.resync();
      }
    });
  }

  private async readSlots(): Promise<void> {
    if (this.cluster.call === undefined) throw new TypeError('watch on a Cluster needs a client with call()');
    const reply = await this.cluster.call('CLUSTER', 'SLOTS') as Array<[number, number, [string, number, ...unknown[]]]>;
    this.slots = reply.map(([first, last, [host, port]]) => [Number(first), Number(last), `${host}:${port}`]);
  }

  private addressOf(channel: string): string | undefined {
    const slot = keySlot(channel);
    return this.slots?.find(([first, last]) => slot >= first && slot <= last)?.[2];
  }

  /** Moves every channel that is not live, or not on its slot's primary, to where it belongs. */
  private reroute(): void {
    if (this.closed) return;
    const moves = new Map<string, Channel[]>();
    for (const channel of this.channels.values()) {
      const address = this.addressOf(channel.name);
      if (address === undefined) {
        this.gapSeen();
        continue;
      }
      const node = channel.node;
      const onIt = node !== undefined && this.nodes.get(address) === node;
      if (onIt && channel.live && ready(node.client)) continue;
      if (node !== undefined) {
        node.channels.delete(channel);
        this.down(channel);
        if (!onIt && ready(node.client)) node.client.sunsubscribe(channel.name).catch(() => undefined);
      }
      moves.set(address, [...(moves.get(address) ?? []), channel]);
    }
    for (const [address, channels] of moves) {
      const node = this.nodeAt(address);
      // Sharded channels of one SSUBSCRIBE must share a slot.
      const bySlot = new Map<number, Channel[]>();
      for (const channel of channels) {
        const slot = keySlot(channel.name);
        bySlot.set(slot, [...(bySlot.get(slot) ?? []), channel]);
      }
      for (const group of bySlot.values()) this.subscribe(node, group, () => this.gapSeen());
    }
    for (const [address, node] of this.nodes) {
      if (node.channels.size === 0) {
        this.nodes.delete(address);
        quit(node.client).catch(() => undefined);
      }
    }
  }

  /** The connection to the primary at `address`, made on first use. */
  private nodeAt(address: string): Node {
    let node = this.nodes.get(address);
    if (node !== undefined) return node;
    const colon = address.lastIndexOf(':');
    const redisOptions = (optionsOf(this.cluster) as { redisOptions?: RedisOptions }).redisOptions ?? {};
    const client = new Redis({
      ...redisOptions, ...SUBSCRIBER_OPTIONS, host: address.slice(0, colon), port: Number(address.slice(colon + 1)),
      // A node that goes away is replaced by whatever the slot map says next, not redialled.
      retryStrategy: () => null,
    }) as unknown as RedisClient & PubSubMethods;
    guardSockets(client);
    const created: Node = { client, channels: new Set() };
    node = created;
    this.nodes.set(address, created);
    const current = (): boolean => this.nodes.get(address) === created;
    client.on?.('smessageBuffer', (channel, message) => this.deliver(channel as Buffer, message as Buffer));
    // An unsolicited `sunsubscribe` (the slot moved away) arrives as an `error` event; which
    // channels it dropped is not said, so every channel of the node is resubscribed.
    client.on?.('error', () => {
      if (!current()) return;
      this.lost(created);
      this.gapSeen();
    });
    client.on?.('close', () => {
      if (!current()) return;
      this.lost(created);
      this.nodes.delete(address);
      for (const channel of created.channels) channel.node = undefined;
      created.channels.clear();
      this.gapSeen();
    });
    return created;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    const nodes = [...this.nodes.values()];
    this.nodes.clear();
    for (const node of nodes) this.lost(node);
    await Promise.all(nodes.map((node) => quit(node.client)));
  }
}
