/**
 * Whether a token request may leave now (docs/design.md, "The IAM is never hammered"): the
 * endpoint's shared breaker, the host's failed-login budget ("The failed-login budget"), a slot in
 * the host's one-second window, and the breaker once more, last, because the waits for the budget's
 * turn and the window's slot can outlast a breaker that opened meanwhile. What the request showed
 * is reported back through the same {@link Admission}: it opens or closes the breaker, spends or
 * proves the budget, and wakes the clients that waited for the endpoint.
 */
import { log } from '@temporalio/activity';
import { breakerWaitMs, type RefreshPolicy } from '../workflows/policy.js';
import { errorMessage } from '../shared/error-message.js';
import { breakerEndpoint, type BreakerCheck, type EndpointBreaker } from './endpoint-breaker.js';
import type { EndpointRateWindow } from './endpoint-rate-window.js';
import { RequestHeldBackError, StoreUnavailableError, storeCall, TokenEndpointError } from './errors.js';
import type { LoginBudget, LoginBudgetObserver, LoginCredentials, LoginProofKey, LoginTicket } from './login-budget.js';
import { endpointDownKind } from './token-endpoint.js';

/**
 * The longest wait for a slot in the host's rate window, or for the host's turn for unproven
 * credentials, in an activity run from the IAM task queue. Temporal's task-queue limit starts
 * activities at about the window's rate, so waits are a fraction of a second; a longer queue
 * (another deployment sharing the host) is waited out durably by the workflow instead.
 */
export const QUEUED_ADMISSION_MAX_WAIT_MS = 5_000;

/**
 * The same wait in a local activity (docs/design.md, "Local renewals"): none. A local activity
 * holds its workflow task open, and no task queue paces local activities: in a storm (timers
 * overdue after an outage, forced refreshes of many clients) hundreds would wait on the window at
 * once, and the ones that got a slot late bunched up at the IAM's edge (51 in one second in the
 * storm test). So a full window or a busy login turn holds the attempt back at once, and its retry
 * comes from the IAM task queue, whose rate limit paces it.
 */
export const LOCAL_ADMISSION_MAX_WAIT_MS = 0;

/**
 * How long a request may go unanswered before it becomes the endpoint's probe (at most half its
 * timeout): a token request takes milliseconds, so one this slow suggests a hang, which is seen
 * only when the timeout ends it. Until then, the others hold back instead of hanging as well.
 */
const SLOW_REQUEST_MS = 2_000;

/** How much longer than a slow request's own timeout it may hold the probe it became. */
const SUSPECT_LOCK_MARGIN_MS = 5_000;

/** Where the admission keeps its state, and whom it tells. */
export interface RequestAdmissionDeps {
  breaker: EndpointBreaker;
  loginBudget: LoginBudget;
  rateWindow: EndpointRateWindow;
  /** The key of the proofs of accepted credentials (`LOGIN_PROOF_KEY`). */
  loginProofKey: LoginProofKey;
  /** See `AcquireTokenDeps.onBreakerChange`. */
  onBreakerChange?: (endpoint: string, open: boolean) => void;
  /** Called when unproven credentials wait for a host's budget, for metrics. */
  onLoginBudgetWait?: LoginBudgetObserver;
  /** Called with the host of each rejected login, for metrics. */
  onRejectedLogin?: (host: string) => void;
  /**
   * Wakes the workflows that waited for `endpoint` (soonest-expiring token first) once a probe
   * closed its breaker. Without it they come back at the end of their (bounded) wait.
   */
  onEndpointRecovered?: (endpoint: string, workflowIds: readonly string[]) => Promise<void>;
}

/** One token request asking to leave. */
export interface AdmissionRequest {
  /** What the failed-login budget proves of it; its `tokenUrl` is the endpoint it goes to, registered or discovered. */
  login: LoginCredentials;
  policy: RefreshPolicy;
  /** Names the request across retries of its activity: a retry takes back the probe and the login turn it held. */
  owner: string;
  /** The workflow to wake when the endpoint recovers, if this request is held back or fails with it down. */
  workflowId: string;
  /** When the client's current token expires (Unix ms, 0 without one): the order of the wake-up. */
  tokenExpiresAt: () => Promise<number>;
  signal: AbortSignal;
  /**
   * The longest wait for the window's slot and for the login turn: {@link QUEUED_ADMISSION_MAX_WAIT_MS}
   * or {@link LOCAL_ADMISSION_MAX_WAIT_MS}. A longer one is held back for the workflow to wait out.
   */
  maxWaitMs: number;
}

/**
 * A request let through: send it, then {@link Admission.report} what came back, once; or, if it
 * is not sent after all, {@link Admission.release}.
 */
export interface Admission {
  /** The endpoint whose breaker admitted it: the token URL's origin and path. */
  readonly endpoint: string;
  /** Nothing was sent: the probe and the login turn this request held go to the next caller. */
  release(): Promise<void>;
  /**
   * Sends the request: runs `request`, and if it goes unanswered for long (a hang), makes it the
   * endpoint's probe meanwhile. Report its outcome after.
   */
  send<T>(request: () => Promise<T>): Promise<T>;
  /**
   * What the request showed (`undefined`: a token was issued; else the error). Never throws: a
   * Redis error here is logged, so it cannot mask the request's own outcome. Resolves to the wait
   * the endpoint's breaker now imposes on every client when the outcome opened it (see
   * `FailureDetails.endpointWaitMs`).
   */
  report(outcome: unknown): Promise<number | undefined>;
}

/** The gates of docs/design.md, "The IAM is never hammered", in Redis: safe to share between activities and workers. */
export class RequestAdmission {
  private readonly breakerSeen = new Map<string, boolean>();

  constructor(private readonly deps: RequestAdmissionDeps) {}

  /**
   * Waits for a slot in `url`'s host window (a discovery read takes one too) up to `maxWaitMs`.
   * Throws {@link RequestHeldBackError} when none comes in time, and `store_unavailable` when Redis fails.
   */
  async rateSlot(url: string, signal: AbortSignal | undefined, maxWaitMs: number): Promise<void> {
    try {
      await this.deps.rateWindow.take(url, { maxWaitMs, ...(signal !== undefined && { signal }) });
    } catch (err) {
      if (err instanceof RequestHeldBackError || signal?.aborted) throw err;
      throw new StoreUnavailableError(err);
    }
  }

  /**
   * Lets `request` through every gate, or throws without sending it: {@link RequestHeldBackError}
   * (the breaker's kind, `rate_limited` from the window, `login_budget`), or `store_unavailable`.
   * Whatever it held when a later gate refuses (a probe, a login turn) is released.
   */
  async admit(request: AdmissionRequest): Promise<Admission> {
    const endpoint = breakerEndpoint(request.login.tokenUrl);
    let gate = await this.passBreaker(endpoint, request);
    let login: LoginTicket | undefined;
    const release = async () => {
      await this.releaseProbe(endpoint, gate);
      await login?.released().catch(() => undefined);
    };
    try {
      login = await this.passLoginBudget(request);
      // The slot right before sending: the edge counts arrivals, so the less happens between the
      // slot and the request, the closer the two counts are.
      await this.rateSlot(request.login.tokenUrl, request.signal, request.maxWaitMs);
      // The breaker is the last gate: it may have opened while this request waited above.
      gate = await this.passBreaker(endpoint, request, gate);
    } catch (err) {
      await release();
      throw err;
    }
    const ticket = login;
    let suspected: Promise<BreakerCheck | undefined> = Promise.resolve(undefined);
    return {
      endpoint,
      release,
      send: async (send) => {
        if (gate.state === 'probe') return send();
        const slow = setTimeout(
          () => {
            suspected = this.suspect(endpoint, gate, request);
          },
          Math.min(SLOW_REQUEST_MS, request.policy.requestTimeoutMs / 2),
        );
        try {
          return await send();
        } finally {
          clearTimeout(slow);
        }
      },
      report: async (outcome) => {
        const probe = (await suspected) ?? gate;
        const endpointWaitMs = await this.reportToBreaker(endpoint, probe, outcome, request);
        await this.reportLogin(request.login.tokenUrl, ticket, outcome);
        return endpointWaitMs;
      },
    };
  }

  /**
   * Asks the breaker (again, with the probe this caller holds, if any). Open, or another client
   * probing: the client is recorded as waiting for the endpoint and {@link RequestHeldBackError}
   * thrown with the breaker's kind and the wait until it may look again.
   */
  private async passBreaker(endpoint: string, request: AdmissionRequest, held?: BreakerCheck): Promise<BreakerCheck> {
    // The request's owner names its probe: a retry of the activity after its worker died takes
    // back the probe that worker held, rather than wait for the probe lock to expire.
    const probeId = held?.state === 'probe' ? held.probeId : request.owner;
    const gate = await storeCall(() => this.deps.breaker.check(endpoint, probeId));
    if (gate.state === 'open' || gate.state === 'probing') {
      this.noteBreaker(endpoint, true);
      await this.addWaiter(endpoint, request);
      const why =
        gate.state === 'open'
          ? `the breaker of ${endpoint} is open after ${gate.kind}`
          : `another client is probing ${endpoint} after ${gate.kind}`;
      throw new RequestHeldBackError(gate.kind, `No request sent: ${why}; next try in ${gate.retryAfterMs} ms`, gate.retryAfterMs);
    }
    this.noteBreaker(endpoint, gate.state === 'probe');
    return gate;
  }

  /** Lets the request through the host's failed-login budget, or throws {@link RequestHeldBackError} (`login_budget`). */
  private async passLoginBudget(request: AdmissionRequest): Promise<LoginTicket> {
    const { loginBudget, loginProofKey, onLoginBudgetWait } = this.deps;
    try {
      return await loginBudget.admit(request.login, loginProofKey, {
        owner: request.owner,
        // The request's own budget, the rate window's longest wait, and a margin.
        turnMs: request.policy.requestTimeoutMs + QUEUED_ADMISSION_MAX_WAIT_MS + 5_000,
        maxWaitMs: request.maxWaitMs,
        ...(onLoginBudgetWait !== undefined && { onWait: onLoginBudgetWait }),
      });
    } catch (err) {
      if (err instanceof RequestHeldBackError) throw err;
      throw new StoreUnavailableError(err);
    }
  }

  /**
   * Makes the slow request of a closed `gate` the endpoint's probe; resolves to that probe's check
   * when it did. Best effort: without it, the others go on sending until the request's timeout.
   */
  private async suspect(endpoint: string, gate: BreakerCheck, request: AdmissionRequest): Promise<BreakerCheck | undefined> {
    const probeId = request.owner;
    try {
      // Held no longer than the request can still take, and a margin: its timeout ends it.
      if (!(await this.deps.breaker.suspect(endpoint, probeId, request.policy.requestTimeoutMs + SUSPECT_LOCK_MARGIN_MS))) return undefined;
      this.noteBreaker(endpoint, true);
      log.warn('A token request is slow to answer: it probes the endpoint, the others hold back until it answers', { endpoint });
      return { state: 'probe', kind: 'blocked', openings: gate.openings, probeId };
    } catch (err) {
      log.warn('Endpoint breaker could not be updated in Redis', { endpoint, error: errorMessage(err) });
      return undefined;
    }
  }

  private async releaseProbe(endpoint: string, gate: BreakerCheck): Promise<void> {
    if (gate.state === 'probe') await this.deps.breaker.releaseProbe(endpoint, gate.probeId).catch(() => undefined);
  }

  /**
   * Tells the breaker what the request showed. The endpoint down (a 429, a block, a 5xx) opens it
   * for everyone (again, and longer, when this was the probe), and the client waits with the
   * others; any other answer from the endpoint, even an error, shows it is up, so a probe closes
   * the breaker and wakes the waiting clients. A probe that got no answer for another reason
   * (cancelled, a bug) frees the probe for the next caller.
   */
  private async reportToBreaker(
    endpoint: string,
    gate: BreakerCheck,
    outcome: unknown,
    request: AdmissionRequest,
  ): Promise<number | undefined> {
    const { breaker } = this.deps;
    try {
      const down = endpointDownKind(outcome);
      if (down !== undefined) {
        const openings = gate.openings + 1;
        const details = outcome instanceof TokenEndpointError ? outcome.details : {};
        const opened = await breaker.open(endpoint, down, breakerWaitMs(down, openings, details, request.policy), openings);
        this.noteBreaker(endpoint, true);
        log.warn('Endpoint breaker opened: no client of this endpoint sends until its next probe', {
          endpoint,
          kind: down,
          waitMs: opened.waitMs,
          openings: opened.openings,
        });
        await this.addWaiter(endpoint, request);
        return opened.waitMs;
      }
      if (gate.state !== 'probe') return undefined;
      if (outcome === undefined || outcome instanceof TokenEndpointError) {
        const closed = await breaker.probeSucceeded(endpoint, gate.probeId);
        this.noteBreaker(endpoint, false);
        log.info('Endpoint breaker closed: the probe got an answer', { endpoint });
        if (closed) void this.wakeWaiters(endpoint);
      } else {
        await breaker.releaseProbe(endpoint, gate.probeId);
      }
    } catch (breakerError) {
      log.warn('Endpoint breaker could not be updated in Redis', { endpoint, error: errorMessage(breakerError) });
    }
    return undefined;
  }

  /**
   * Tells the budget what the IAM said of the credentials: accepted (a token), rejected (spends
   * the budget, proven or not), or neither. A Redis error here is logged, not thrown.
   */
  private async reportLogin(tokenUrl: string, login: LoginTicket, outcome: unknown): Promise<void> {
    try {
      if (outcome === undefined) {
        await login.accepted();
      } else if (outcome instanceof TokenEndpointError && outcome.kind === 'credentials_rejected') {
        const rejections = await login.rejected();
        const host = new URL(tokenUrl).host;
        this.deps.onRejectedLogin?.(host);
        log.warn('Rejected login: it counts against the failed-login budget of its host', {
          host,
          rejectionsInWindow: rejections,
          proven: login.proven,
        });
      } else {
        await login.released();
      }
    } catch (budgetError) {
      log.warn('Failed-login budget could not be updated in Redis', { error: errorMessage(budgetError) });
    }
  }

  /**
   * Records the client as waiting for `endpoint`. Best effort: without it the client still comes
   * back at the end of its wait, which the breaker bounds.
   */
  private async addWaiter(endpoint: string, request: AdmissionRequest): Promise<void> {
    if (this.deps.onEndpointRecovered === undefined) return;
    try {
      await this.deps.breaker.addWaiter(endpoint, request.workflowId, await request.tokenExpiresAt());
    } catch (err) {
      log.warn('Could not record the client as waiting for its endpoint in Redis', { endpoint, error: errorMessage(err) });
    }
  }

  /** Wakes every client that waited for `endpoint`, soonest-expiring first. Best effort, like {@link addWaiter}. */
  private async wakeWaiters(endpoint: string): Promise<void> {
    const { onEndpointRecovered } = this.deps;
    if (onEndpointRecovered === undefined) return;
    try {
      const waiters = await this.deps.breaker.takeWaiters(endpoint);
      if (waiters.length > 0) await onEndpointRecovered(endpoint, waiters);
    } catch (err) {
      log.warn('Could not wake the clients waiting for the endpoint', { endpoint, error: errorMessage(err) });
    }
  }

  /** Tells `onBreakerChange` what this worker sees, once per change (the first sight too). */
  private noteBreaker(endpoint: string, open: boolean): void {
    if (this.breakerSeen.get(endpoint) === open) return;
    this.breakerSeen.set(endpoint, open);
    this.deps.onBreakerChange?.(endpoint, open);
  }
}
