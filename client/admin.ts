/**
 * The admin API: register, inspect and steer token workflows through a Temporal client. `tokenctl`
 * is a thin shell over it; other programs can use it directly.
 */
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import {
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
import type { ClientRegistration } from '../workflows/registration.js';
import {
  endpointHost,
  TokenClientId,
  TokenEndpointHost,
  TokenExpiresAt,
  TokenFailures,
  TokenNextRefreshAt,
  TokenState as TokenStateKey,
} from '../workflows/search-attributes.js';
import { tokenLifecycle } from '../workflows/token-lifecycle.js';
import { parseRegistration } from './registration-schema.js';

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
        staticSummary: `OAuth token for ${registration.clientId} from ${endpointHost(registration.tokenUrl)}`,
        staticDetails: `Client credentials (${registration.authMethod})${registration.scope ? `, scope "${registration.scope}"` : ''}, secret from ${registration.secretRef.split(':')[0]}`,
        typedSearchAttributes: [
          { key: TokenClientId, value: registration.clientId },
          { key: TokenEndpointHost, value: endpointHost(registration.tokenUrl) },
          { key: TokenStateKey, value: 'acquiring' },
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

  async reconfigure(clientId: string, changes: RegistrationChanges): Promise<void> {
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

  /** Running token workflows on this task queue, optionally only those in `state`. */
  async list(options: { state?: TokenState } = {}): Promise<RegisteredClient[]> {
    const clauses = [`WorkflowType = 'tokenLifecycle'`, `TaskQueue = '${this.taskQueue}'`, `ExecutionStatus = 'Running'`];
    if (options.state !== undefined) clauses.push(`TokenState = '${options.state}'`);
    const rows: RegisteredClient[] = [];
    for await (const execution of this.client.workflow.list({ query: clauses.join(' AND ') })) {
      const attributes = execution.typedSearchAttributes;
      rows.push({
        clientId: attributes.get(TokenClientId) ?? execution.workflowId.replace(/^token-lifecycle:/, ''),
        state: (attributes.get(TokenStateKey) as TokenState | undefined) ?? 'unknown',
        expiresAt: attributes.get(TokenExpiresAt)?.getTime() ?? null,
        nextRefreshAt: attributes.get(TokenNextRefreshAt)?.getTime() ?? null,
        failures: attributes.get(TokenFailures) ?? 0,
        tokenEndpointHost: attributes.get(TokenEndpointHost) ?? null,
      });
    }
    return rows.sort((a, b) => a.clientId.localeCompare(b.clientId));
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
