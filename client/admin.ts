/**
 * The admin API: register, inspect and steer token workflows through a Temporal client. `tokenctl`
 * is a thin shell over it; other programs can use it directly.
 */
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import {
  clientIdOf,
  forceRefreshSignal,
  reconfigureSignal,
  refreshNowUpdate,
  resumeSignal,
  statusQuery,
  stopSignal,
  workflowIdFor,
  WORKFLOW_TASK_QUEUE,
  type RegistrationChanges,
  type TokenState,
  type TokenStatus,
} from '../workflows/messages.js';
import {
  applyRegistrationChanges,
  FALLBACK_FIELDS,
  iamUrlOf,
  REFERENCE_FIELDS,
  type ClientRegistration,
  type FallbackField,
} from '../workflows/registration.js';
import {
  endpointHost,
  TokenClientId,
  TokenEndpointHost,
  TokenExpiresAt,
  TokenFailures,
  TokenNextRefreshAt,
  TokenState as TokenStateKey,
} from '../workflows/search-attributes.js';
import { PATCHES_OF_EVERY_RUN, tokenLifecycle, type TokenLifecycleInput } from '../workflows/token-lifecycle.js';
import { parseRegistration } from './registration-schema.js';
import { describeSettled } from './settled-description.js';
import { decodePayloads } from './temporal-internals.js';
import { errorMessage } from '../shared/error-message.js';
import { forEachConcurrently } from '../shared/for-each-concurrently.js';

export class AlreadyRegisteredError extends Error {
  readonly code = 'already_registered';
  constructor(readonly clientId: string) {
    super(`Client '${clientId}' is already registered: use reconfigure (or tokenctl apply) to change it`);
    this.name = 'AlreadyRegisteredError';
  }
}

/** A `refresh --wait` the workflow refused or could not complete; `message` says why. */
export class RefreshFailedError extends Error {
  readonly code = 'refresh_failed';
  constructor(
    readonly clientId: string,
    reason: string,
  ) {
    super(`Refresh of '${clientId}' failed: ${reason}`);
    this.name = 'RefreshFailedError';
  }
}

export class NotRegisteredError extends Error {
  readonly code = 'not_registered';
  constructor(readonly clientId: string) {
    super(`Client '${clientId}' is not registered (no running workflow ${workflowIdFor(clientId)})`);
    this.name = 'NotRegisteredError';
  }
}

/** One row of {@link TokenAdmin.list}, read from search attributes (no query per workflow). */
export interface RegisteredClient {
  clientId: string;
  state: TokenState | 'unknown';
  expiresAt: number | null;
  nextRefreshAt: number | null;
  failures: number;
  tokenEndpointHost: string | null;
}

/** One row of {@link TokenAdmin.patchRetirement}: how many running workflows still began before a patch. */
export interface PatchRetirement {
  /** The patch ID, as the workflow asks `patched()` for it. */
  patch: (typeof PATCHES_OF_EVERY_RUN)[number];
  /** Running token workflows of the task queue. */
  running: number;
  /** Those of them that began before the patch: it can be deprecated once this is 0. */
  predating: number;
}

/** The fields `apply` compares and `reconfigure` may change: everything but the client ID. */
export const REGISTRATION_FIELDS = [
  'tokenUrl',
  'issuer',
  'authMethod',
  'secretRef',
  'keyRef',
  'assertionRef',
  'secretRefs',
  'keyRefs',
  'certRef',
  'caRef',
  'keyId',
  'signingAlg',
  'assertionAudience',
  'proxyUrl',
  'scope',
  'extraParams',
  'policy',
] as const satisfies readonly Exclude<keyof ClientRegistration, 'clientId'>[];
export type RegistrationField = (typeof REGISTRATION_FIELDS)[number];

/**
 * The fields whose change makes a client's credentials unproven: what the worker proves accepted
 * is the credential (secret, key or certificate, and the assertion's algorithm and key ID) sent to
 * one token endpoint with one method (docs/design.md, "The failed-login budget").
 */
export const CREDENTIAL_FIELDS: readonly RegistrationField[] = [
  'tokenUrl',
  'issuer',
  'authMethod',
  'secretRef',
  'keyRef',
  'assertionRef',
  'secretRefs',
  'keyRefs',
  'certRef',
  'keyId',
  'signingAlg',
];

/**
 * What {@link TokenAdmin.apply} did (or, with `dryRun`, would do), per client ID. Each list is in
 * the order of the registrations given (a clients file's order), whatever order the concurrent
 * calls finished in; `removed` (clients not given) is sorted by client ID.
 */
export interface ApplyResult {
  /** Not running before: a workflow was started. */
  created: string[];
  /** Running with another registration: sent `reconfigure` with the fields that differ. */
  updated: { clientId: string; fields: RegistrationField[] }[];
  unchanged: string[];
  /** Running on this task queue but not in the desired set (only with `prune`): stopped. */
  removed: string[];
  /** What could not be done; the rest was still applied. */
  failed: { clientId: string; action: 'create' | 'update' | 'remove'; message: string }[];
  /**
   * The created clients, and the updated ones whose credentials changed: their credentials are
   * unproven until the IAM accepts them, so the worker tries them one at a time per IAM host within
   * its failed-login budget (docs/design.md, "The failed-login budget").
   */
  unproven: string[];
}

export interface ApplyOptions {
  /** Stop the running workflows of this task queue whose client is not in the desired set. @default false */
  prune?: boolean;
  /** With `prune`: also delete the pruned clients' tokens from Redis (see {@link TokenAdmin.remove}). @default false */
  purge?: boolean;
  /** Only work out what would change. @default false */
  dryRun?: boolean;
  /** Clients handled at once (each costs a few Temporal calls). @default {@link APPLY_CONCURRENCY} */
  concurrency?: number;
  /** Told after each client is handled (created, updated, unchanged or failed; then each removed one). */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Clients `apply` handles at once. Each costs two or three sequential round trips to Temporal
 * (describe, history or start, signal); docs/deployment.md, "Sizing a worker", has what this buys.
 */
export const APPLY_CONCURRENCY = 32;

export interface TokenAdminOptions {
  /** @default 'token-lifecycle' */
  taskQueue?: string;
}

export class TokenAdmin {
  readonly taskQueue: string;

  constructor(
    readonly client: Client,
    options: TokenAdminOptions = {},
  ) {
    this.taskQueue = options.taskQueue ?? WORKFLOW_TASK_QUEUE;
  }

  /** Validates the registration and starts its workflow. */
  async register(input: ClientRegistration): Promise<void> {
    const registration = parseRegistration(input);
    try {
      await this.client.workflow.start(tokenLifecycle, {
        workflowId: workflowIdFor(registration.clientId),
        taskQueue: this.taskQueue,
        args: [{ registration }],
        staticSummary: `OAuth token for ${registration.clientId} from ${endpointHost(iamUrlOf(registration))}`,
        staticDetails: staticDetails(registration),
        typedSearchAttributes: [
          { key: TokenClientId, value: registration.clientId },
          { key: TokenEndpointHost, value: endpointHost(iamUrlOf(registration)) },
          { key: TokenStateKey, value: 'acquiring' },
          // What the workflow's first publish() would set: starting with it saves an upsert.
          { key: TokenFailures, value: 0 },
        ],
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) throw new AlreadyRegisteredError(registration.clientId);
      throw err;
    }
  }

  async status(clientId: string): Promise<TokenStatus> {
    return this.call(clientId, (handle) => handle.query(statusQuery));
  }

  /**
   * Asks for a refresh. With `wait`, resolves with the new status once the token is in Redis, or
   * rejects with the reason the refresh cannot happen (rejected credentials, backing off).
   */
  async refresh(clientId: string, options: { reason?: string; wait?: boolean } = {}): Promise<TokenStatus | null> {
    const reason = options.reason ?? 'requested by an operator';
    if (options.wait) {
      return this.call(clientId, async (handle) => {
        try {
          return await handle.executeUpdate(refreshNowUpdate, { args: [{ reason }] });
        } catch (err) {
          // The validator's or handler's reason is the cause; the wrapper only says "failed".
          if (err instanceof WorkflowUpdateFailedError) throw new RefreshFailedError(clientId, err.cause?.message ?? err.message);
          throw err;
        }
      });
    }
    await this.call(clientId, (handle) => handle.signal(forceRefreshSignal, { reason }));
    return null;
  }

  /**
   * Changes a client's registration: `changes` merge into the running one (`null` removes a field,
   * see {@link RegistrationChanges}), and the result is validated as a whole before anything is
   * sent, so a change of method that lacks its references is refused here, not by the IAM.
   * @throws {@link InvalidRegistrationError} listing every problem of the changed registration.
   */
  async reconfigure(clientId: string, changes: RegistrationChanges): Promise<void> {
    const current = await this.registration(clientId);
    if (current === null) throw new NotRegisteredError(clientId);
    parseRegistration(applyRegistrationChanges(current, changes));
    await this.sendReconfigure(clientId, changes);
  }

  private async sendReconfigure(clientId: string, changes: RegistrationChanges): Promise<void> {
    await this.call(clientId, (handle) => handle.signal(reconfigureSignal, changes));
  }

  async resume(clientId: string): Promise<void> {
    await this.call(clientId, (handle) => handle.signal(resumeSignal));
  }

  /** Stops the workflow and waits for it to end; with `purge`, its token is deleted from Redis. */
  async remove(clientId: string, options: { purge?: boolean } = {}): Promise<TokenStatus> {
    return this.call(clientId, async (handle) => {
      await handle.signal(stopSignal, { purge: options.purge === true });
      return (await handle.result()) as TokenStatus;
    });
  }

  /**
   * The registration a client's running workflow uses now, or null when none is running. Read from
   * the current run's history, which works whether or not a worker is up: the run's input (which
   * continue-as-new carries forward) with every `reconfigure` since applied in order, as the
   * workflow applies them, including one sent a moment ago while the worker was busy with the run.
   * The registration holds only the secret's reference, never the secret.
   */
  async registration(clientId: string): Promise<ClientRegistration | null> {
    let runId: string;
    try {
      const description = await describeSettled(this.client.workflow.getHandle(workflowIdFor(clientId)));
      if (description.status.name !== 'RUNNING') return null;
      runId = description.runId;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return null;
      throw err;
    }
    const history = await this.client.workflow.getHandle(workflowIdFor(clientId), runId).fetchHistory();
    const converter = this.client.options.loadedDataConverter;
    let registration: ClientRegistration | null = null;
    for (const event of history.events ?? []) {
      const started = event.workflowExecutionStartedEventAttributes;
      if (started) {
        const [input] = (await decodePayloads(converter, started.input?.payloads)) as [TokenLifecycleInput];
        registration = input.registration;
      }
      const signaled = event.workflowExecutionSignaledEventAttributes;
      if (signaled?.signalName === reconfigureSignal.name && registration !== null) {
        const [changes] = (await decodePayloads(converter, signaled.input?.payloads)) as [RegistrationChanges | undefined];
        registration = applyRegistrationChanges(registration, changes ?? {});
      }
    }
    return registration;
  }

  /**
   * Makes the running workflows match `registrations` (declarative, idempotent): starts the
   * missing ones, reconfigures those whose registration differs (only the differing fields are
   * sent), leaves equal ones alone, and with `prune` stops the other running workflows of this
   * task queue (their tokens stay in Redis until they expire, unless `purge`). A failure for one client does not
   * stop the others; it is reported in {@link ApplyResult.failed}.
   */
  async apply(registrations: readonly ClientRegistration[], options: ApplyOptions = {}): Promise<ApplyResult> {
    const result: ApplyResult = { created: [], updated: [], unchanged: [], removed: [], failed: [], unproven: [] };
    const desired = registrations.map((r) => parseRegistration(r));
    const concurrency = options.concurrency ?? APPLY_CONCURRENCY;
    const fileOrder = new Map(desired.map((registration, index) => [registration.clientId, index]));
    let done = 0;
    let total = desired.length;
    const handled = () => options.onProgress?.(++done, total);

    await forEachConcurrently(desired, concurrency, async (registration) => {
      await this.applyOne(registration, options, result);
      handled();
    });

    if (options.prune) {
      const keep = new Set(desired.map((r) => r.clientId));
      const extra = (await this.list()).map((row) => row.clientId).filter((clientId) => !keep.has(clientId));
      total += extra.length;
      await forEachConcurrently(extra, concurrency, async (clientId) => {
        try {
          if (!options.dryRun) await this.remove(clientId, { purge: options.purge === true });
          result.removed.push(clientId);
        } catch (err) {
          // Visibility lags: a workflow that ended a moment ago may still be listed as running.
          if (!(err instanceof NotRegisteredError)) result.failed.push({ clientId, action: 'remove', message: errorMessage(err) });
        }
        handled();
      });
    }

    // Concurrent calls finish in any order: report in the file's (the pruned ones last, by ID).
    const position = (clientId: string) => fileOrder.get(clientId) ?? desired.length;
    const byPosition = (a: string, b: string) => position(a) - position(b) || a.localeCompare(b);
    result.created.sort(byPosition);
    result.updated.sort((a, b) => byPosition(a.clientId, b.clientId));
    result.unchanged.sort(byPosition);
    result.unproven.sort(byPosition);
    result.failed.sort((a, b) => byPosition(a.clientId, b.clientId));
    result.removed.sort();
    return result;
  }

  /** One client of {@link apply}: what it needs, done, and recorded in `result`. */
  private async applyOne(registration: ClientRegistration, options: ApplyOptions, result: ApplyResult): Promise<void> {
    const { clientId } = registration;
    if (!options.dryRun) {
      // Start first: for a new client that is the only call (a describe first would double the
      // round trips of a large first apply); a running one refuses it and is compared below.
      try {
        await this.register(registration);
        result.created.push(clientId);
        result.unproven.push(clientId);
        return;
      } catch (err) {
        if (!(err instanceof AlreadyRegisteredError)) {
          result.failed.push({ clientId, action: 'create', message: errorMessage(err) });
          return;
        }
      }
    }
    const current = await this.registration(clientId).catch((err: unknown) => {
      result.failed.push({ clientId, action: 'update', message: errorMessage(err) });
      return undefined;
    });
    if (current === undefined) return;
    if (current === null) {
      // A dry run (nothing was started above), or a run that ended between the start and now.
      if (options.dryRun) {
        result.created.push(clientId);
        result.unproven.push(clientId);
      } else {
        result.failed.push({ clientId, action: 'update', message: `the workflow of ${clientId} ended while apply ran: run it again` });
      }
      return;
    }
    const fields = changedFields(current, registration);
    if (fields.length === 0) {
      result.unchanged.push(clientId);
      return;
    }
    try {
      if (!options.dryRun) await this.sendReconfigure(clientId, changesFor(registration, fields));
      result.updated.push({ clientId, fields });
      if (fields.some((field) => CREDENTIAL_FIELDS.includes(field))) result.unproven.push(clientId);
    } catch (err) {
      result.failed.push({ clientId, action: 'update', message: errorMessage(err) });
    }
  }

  /** Running token workflows on this task queue, optionally only those in `state`. */
  async list(options: { state?: TokenState } = {}): Promise<RegisteredClient[]> {
    const query =
      options.state === undefined ? this.runningQuery() : `${this.runningQuery()} AND ${TokenStateKey.name} = '${options.state}'`;
    const rows: RegisteredClient[] = [];
    for await (const execution of this.client.workflow.list({ query })) {
      const attributes = execution.typedSearchAttributes;
      rows.push({
        clientId: attributes.get(TokenClientId) ?? clientIdOf(execution.workflowId),
        state: (attributes.get(TokenStateKey) as TokenState | undefined) ?? 'unknown',
        expiresAt: attributes.get(TokenExpiresAt)?.getTime() ?? null,
        nextRefreshAt: attributes.get(TokenNextRefreshAt)?.getTime() ?? null,
        failures: attributes.get(TokenFailures) ?? 0,
        tokenEndpointHost: attributes.get(TokenEndpointHost) ?? null,
      });
    }
    return rows.sort((a, b) => a.clientId.localeCompare(b.clientId));
  }

  /**
   * How many running token workflows of this task queue began before each patch that every run
   * takes (docs/design.md, "Retiring a patch"): those whose `TemporalChangeVersion` search
   * attribute, where Temporal lists the patches a run took, lacks it. Counted from visibility, a
   * moment behind the runs: a run whose first workflow task has not completed yet counts as
   * predating, which errs on the safe side.
   */
  async patchRetirement(): Promise<PatchRetirement[]> {
    const running = this.runningQuery();
    const { count: total } = await this.client.workflow.count(running);
    return Promise.all(
      PATCHES_OF_EVERY_RUN.map(async (patch) => {
        const { count: took } = await this.client.workflow.count(`${running} AND TemporalChangeVersion = '${patch}'`);
        return { patch, running: total, predating: Math.max(0, total - took) };
      }),
    );
  }

  /** The visibility query of this task queue's running token workflows. */
  private runningQuery(): string {
    return `WorkflowType = '${tokenLifecycle.name}' AND TaskQueue = '${this.taskQueue}' AND ExecutionStatus = 'Running'`;
  }

  private async call<T>(clientId: string, action: (handle: ReturnType<Client['workflow']['getHandle']>) => Promise<T>): Promise<T> {
    try {
      return await action(this.client.workflow.getHandle(workflowIdFor(clientId)));
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new NotRegisteredError(clientId);
      throw err;
    }
  }
}

/**
 * The fields of `desired` that differ from `current`. An absent `scope`, `extraParams` or `policy`
 * equals an empty one: that is how {@link changesFor} clears them, since `reconfigure` merges.
 */
export function changedFields(current: ClientRegistration, desired: ClientRegistration): RegistrationField[] {
  return REGISTRATION_FIELDS.filter((field) => canonicalJson(normalized(current[field])) !== canonicalJson(normalized(desired[field])));
}

/**
 * The `reconfigure` payload that sets `fields` to their values in `desired`. `reconfigure` merges
 * into the current registration, so a field to clear is sent rather than left out: `scope`,
 * `extraParams` and `policy` empty (`scope: ''` is not sent to the IAM; `{}` is no extra
 * parameters and the default policy), which workflows of any version understand; the others
 * `null`, which removes them.
 */
function changesFor(desired: ClientRegistration, fields: readonly RegistrationField[]): RegistrationChanges {
  const changes: Record<string, unknown> = {};
  for (const field of fields)
    changes[field] = desired[field] ?? (field === 'scope' ? '' : field === 'extraParams' || field === 'policy' ? {} : null);
  return changes;
}

/** The workflow's static details: how it authenticates, never with what. */
function staticDetails(registration: ClientRegistration): string {
  const scope = registration.scope ? `, scope "${registration.scope}"` : '';
  const what = { secretRef: 'secret', keyRef: 'key', assertionRef: 'minted assertion', certRef: 'certificate', caRef: 'CA' } as const;
  const sources = REFERENCE_FIELDS.flatMap((field) => {
    const ref = registration[field];
    return ref === undefined ? [] : [`${what[field]} from ${ref.split(':')[0]}`];
  });
  const lists = Object.entries(FALLBACK_FIELDS).flatMap(([list, field]) => {
    const refs = registration[list as FallbackField];
    return refs === undefined ? [] : [`${refs.length} fallback ${what[field]}s (${list})`];
  });
  sources.push(...lists);
  return `Client credentials (${registration.authMethod})${scope}, ${sources.join(', ')}`;
}

function normalized(value: unknown): unknown {
  if (value === '' || value === undefined) return null;
  if (typeof value === 'object' && value !== null && Object.keys(value).length === 0) return null;
  return value;
}

/** JSON with object keys sorted, so equal registrations compare equal whatever their key order. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    typeof v === 'object' && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}
