/**
 * A subscription to `<prefix>token-updated`, the channel on which the worker announces every token
 * it stores (docs/design.md, "Redis layout"). A Redis connection that subscribes can run nothing
 * else, so this holds a dedicated one, duplicated from the caller's client (standalone, Sentinel or
 * Cluster).
 */
import type { Cluster, Redis } from 'ioredis';
import { parseTokenUpdated, type ReceivedTokenUpdate } from './token-updated-message.js';
import { duplicateConnection } from './redis-connection.js';

/** What a {@link TokenUpdates} subscriber is told. */
export interface TokenUpdatesListener {
  /** A token was stored: for `message.clientId`, generation `message.generation`. */
  onUpdate(message: ReceivedTokenUpdate): void;
  /**
   * The subscription's connection closed: announcements made until it is back are lost, so
   * anything kept because no announcement said otherwise must be dropped.
   */
  onConnectionLost(): void;
}

/** One lazily opened subscription to the token-updated channel, shared by its listeners. */
export class TokenUpdates {
  private subscriber: Redis | Cluster | undefined;
  private subscribed: Promise<void> | undefined;
  private live = false;
  private readonly listeners = new Set<TokenUpdatesListener>();

  constructor(
    private readonly redis: Redis | Cluster,
    readonly channel: string,
  ) {}

  /**
   * Whether the subscription is confirmed and its connection has not closed since: only then
   * can the absence of an announcement be trusted.
   */
  get isLive(): boolean {
    return this.live;
  }

  /**
   * Opens the subscription once; resolves when Redis has confirmed it. A failure is not kept: the
   * next call tries again, so a reader created while Redis was down works once it is back.
   */
  start(): Promise<void> {
    this.subscribed ??= this.subscribe().catch((error: unknown) => {
      this.subscribed = undefined;
      this.subscriber?.disconnect();
      this.subscriber = undefined;
      throw error;
    });
    return this.subscribed;
  }

  listen(listener: TokenUpdatesListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Closes the dedicated connection. */
  close(): void {
    this.live = false;
    this.listeners.clear();
    this.subscriber?.disconnect();
  }

  private async subscribe(): Promise<void> {
    const subscriber = duplicateConnection(this.redis);
    this.subscriber = subscriber;
    // Errors show up as failed reads on the caller's own connection; this keeps ioredis from
    // printing every reconnect attempt of this one.
    subscriber.on('error', () => undefined);
    subscriber.on('message', (channel: string, payload: string) => {
      if (channel !== this.channel) return;
      const message = parseTokenUpdated(payload);
      if (message === undefined) return;
      for (const listener of this.listeners) listener.onUpdate(message);
    });
    subscriber.on('close', () => {
      if (!this.live) return;
      this.live = false;
      for (const listener of this.listeners) listener.onConnectionLost();
    });
    // ioredis subscribes again by itself after a reconnect (autoResubscribe). Anything cached
    // before then was dropped on `close`, and nothing is cached while the connection is down.
    subscriber.on('ready', () => {
      if (this.subscribed !== undefined) this.live = true;
    });
    await subscriber.subscribe(this.channel);
    this.live = true;
  }
}
