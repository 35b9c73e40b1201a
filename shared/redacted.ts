/**
 * A value that cannot be printed by accident: the base of client secrets and access tokens
 * (docs/design.md, "No secret in Temporal": neither reaches Temporal or a log line).
 */

const REDACTED = '[redacted]';

/**
 * Holds a sensitive string. Printing, logging or serializing it yields `[redacted]`; only
 * {@link Redacted.reveal} gives the value, so every use is greppable.
 */
export abstract class Redacted {
  // A private field: not an own enumerable property, so spreads, `util.inspect` and
  // `JSON.stringify` of a containing object cannot reach it.
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  /** The value itself. Call it only where it goes on the wire or to Redis. */
  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return REDACTED;
  }
}
