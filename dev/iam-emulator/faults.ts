/**
 * Faults a test can inject into the emulator's token endpoint, to see how a client copes with
 * what real providers and the proxies in front of them do on a bad day.
 */

/**
 * A fault that replaces the token endpoint's normal answer.
 *
 * - `rate_limit`: 429 with `Retry-After` as delta-seconds (a number), as an IMF-fixdate HTTP-date
 *   (a `Date`), or absent (`'none'`). @default retryAfter 1
 * - `reset`: the TCP connection is reset (RST) instead of answered.
 * - `hang`: no answer at all; the connection stays open until the client gives up or the
 *   emulator is closed.
 * - `status`: a 5xx from the provider or a proxy, by default an HTML error page as nginx sends.
 * - `body`: any status and body, for malformed answers (HTML, JSON without `access_token`,
 *   `expires_in` of the wrong type, `token_type: "mac"`, an oversized body…).
 * - `hold`: a slow IAM. The request waits until `release` settles, then gets the normal answer;
 *   `onHeld` is told when it starts waiting, so a test can act while a request is in flight.
 *
 * @see RFC 9110 §10.2.3 (Retry-After), RFC 6585 §4 (429)
 */
export type Fault =
  | { kind: 'rate_limit'; retryAfter?: number | Date | 'none' }
  | { kind: 'reset' }
  | { kind: 'hang' }
  | { kind: 'status'; status: 500 | 502 | 503; body?: string; contentType?: string }
  | { kind: 'body'; status?: number; contentType?: string; body: string }
  | { kind: 'hold'; release: Promise<unknown>; onHeld?: () => void };

export type FaultKind = Fault['kind'];

/** Which requests a fault applies to. */
export interface FaultOptions {
  /** How many requests it applies to. @default until {@link FaultQueue.clear} */
  times?: number;
  /** Only requests that name this client ID (authenticated or not). @default every request */
  clientId?: string;
}

interface QueuedFault {
  fault: Fault;
  remaining: number;
  clientId: string | undefined;
}

/**
 * The injected faults, in injection order: a request gets the first one that matches it, which
 * then has one use fewer.
 */
export class FaultQueue {
  #queue: QueuedFault[] = [];

  add(fault: Fault, options: FaultOptions = {}): void {
    const times = options.times ?? Number.POSITIVE_INFINITY;
    if (!(times >= 1) || (Number.isFinite(times) && !Number.isInteger(times))) {
      throw new RangeError(`Fault option "times" must be a positive integer, got ${String(options.times)}`);
    }
    if (fault.kind === 'rate_limit' && typeof fault.retryAfter === 'number') {
      if (!Number.isInteger(fault.retryAfter) || fault.retryAfter < 0) {
        // RFC 9110 §10.2.3: delay-seconds is a non-negative integer; a test that wants a broken
        // header can inject it with a `body` fault's raw answer instead.
        throw new RangeError(`Fault "retryAfter" must be a non-negative integer of seconds, got ${fault.retryAfter}`);
      }
    }
    this.#queue.push({ fault, remaining: times, clientId: options.clientId });
  }

  /** The fault for a request naming `clientId` (if any), using it up once. */
  take(clientId: string | undefined): Fault | undefined {
    const index = this.#queue.findIndex((queued) => queued.clientId === undefined || queued.clientId === clientId);
    const queued = this.#queue[index];
    if (queued === undefined) return undefined;
    queued.remaining -= 1;
    if (queued.remaining <= 0) this.#queue.splice(index, 1);
    return queued.fault;
  }

  clear(): void {
    this.#queue = [];
  }
}

/**
 * The `Retry-After` header value of a `rate_limit` fault, or `undefined` for none.
 * A `Date` is sent as an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
 * @see RFC 9110 §10.2.3, §5.6.7
 */
export function retryAfterHeaderValue(retryAfter: number | Date | 'none' | undefined): string | undefined {
  if (retryAfter === 'none') return undefined;
  if (retryAfter instanceof Date) return retryAfter.toUTCString();
  return String(retryAfter ?? 1);
}

/** The page nginx sends for a 5xx, the usual body of a `status` fault. */
export function proxyErrorPage(status: number): string {
  const reason = { 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Temporarily Unavailable' }[status] ?? 'Error';
  return `<html>\r\n<head><title>${status} ${reason}</title></head>\r\n<body>\r\n<center><h1>${status} ${reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`;
}
