/**
 * The provider's edge, in front of the token endpoint: a per-IP rate limit, and a block of IPs
 * that keep failing to authenticate. These are what a fleet of token-fetching replicas runs into
 * (docs/design.md, "What the IAM does").
 */

/** Timestamps of events per key, forgetting those older than the window. */
class SlidingWindow {
  readonly #events = new Map<string, number[]>();
  readonly #windowMs: number;

  constructor(windowMs: number) {
    this.#windowMs = windowMs;
  }

  /** How many events of `key` happened in `(now - windowMs, now]`. */
  count(key: string, now: number): number {
    const recent = (this.#events.get(key) ?? []).filter((at) => at > now - this.#windowMs);
    if (recent.length === 0) this.#events.delete(key);
    else this.#events.set(key, recent);
    return recent.length;
  }

  add(key: string, now: number): void {
    const events = this.#events.get(key) ?? [];
    events.push(now);
    this.#events.set(key, events);
  }

  clear(): void {
    this.#events.clear();
  }
}

/**
 * At most `limit` requests per IP in any one-second window. Only admitted requests count, so a
 * client that keeps sending while limited is admitted again as soon as its older requests leave
 * the window (like a proxy's sliding-window limit, not a penalty box).
 */
export class RateLimiter {
  readonly #window = new SlidingWindow(1000);
  readonly #limit: number;

  /** @param limit requests per second per IP; `Infinity` turns the limit off */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Whether a request from `remoteAddress` at `now` is admitted; an admitted one is counted. */
  admit(remoteAddress: string, now: number): boolean {
    if (this.#window.count(remoteAddress, now) >= this.#limit) return false;
    this.#window.add(remoteAddress, now);
    return true;
  }
}

/** Settings of {@link LoginBlocker}. */
export interface LoginBlockerSettings {
  /** Failed client authentications within `windowMs` that get an IP blocked. */
  threshold: number;
  windowMs: number;
  /** How long a block lasts. */
  blockDurationMs: number;
}

/** Blocks IPs that keep failing client authentication, as brute-force protection does. */
export class LoginBlocker {
  readonly #failures: SlidingWindow;
  readonly #blockedUntil = new Map<string, number>();
  readonly #settings: LoginBlockerSettings;

  constructor(settings: LoginBlockerSettings) {
    this.#settings = settings;
    this.#failures = new SlidingWindow(settings.windowMs);
  }

  /** Counts a failed authentication; returns true when it got the IP blocked. */
  recordFailure(remoteAddress: string, now: number): boolean {
    this.#failures.add(remoteAddress, now);
    if (this.#failures.count(remoteAddress, now) < this.#settings.threshold) return false;
    this.block(remoteAddress, now, this.#settings.blockDurationMs);
    return true;
  }

  block(remoteAddress: string, now: number, durationMs: number): void {
    this.#blockedUntil.set(remoteAddress, now + durationMs);
  }

  isBlocked(remoteAddress: string, now: number): boolean {
    const until = this.#blockedUntil.get(remoteAddress);
    if (until === undefined) return false;
    if (now < until) return true;
    this.#blockedUntil.delete(remoteAddress);
    return false;
  }

  /** IPs blocked at `now`. */
  blocked(now: number): string[] {
    return [...this.#blockedUntil.keys()].filter((address) => this.isBlocked(address, now));
  }

  /** Lifts every block and forgets past failures, so the next failure does not block again. */
  unblockAll(): void {
    this.#blockedUntil.clear();
    this.#failures.clear();
  }
}
