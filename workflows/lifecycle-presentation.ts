/**
 * How a token lifecycle shows itself to operators (docs/design.md, "In the Temporal UI"): search
 * attributes for lists, the Markdown current details of the workflow's page, summaries on its
 * timers and token requests, and the forced-refresh metric. Reads the state, never changes it.
 */
import type { MetricCounter, SearchAttributeUpdatePair } from '@temporalio/common';
import * as wf from '@temporalio/workflow';
import type { ForcedRefreshDecision, TokenLifecycleState } from './lifecycle-state.js';
import {
  endpointHost,
  TokenClientId,
  TokenEndpointHost,
  TokenExpiresAt,
  TokenFailures,
  TokenNextRefreshAt,
  TokenState,
} from './search-attributes.js';
import { iamUrlOf } from './registration.js';

/** How {@link publishLifecycle} sets the search attributes. */
export interface PublishOptions {
  /**
   * Whether `TokenExpiresAt` and `TokenNextRefreshAt` are kept while `active` too: runs begun before
   * the `active-without-times` patch. Otherwise they are set only outside `active`, where the state
   * or the failure count changes with them, so a plain renewal upserts nothing (a billable action
   * per cycle less); the current details and the `status` query still show both.
   */
  timesWhileActive: boolean;
}

/** Publishes the state: search attributes (only those that changed) and the current details. */
export function publishLifecycle(lifecycle: TokenLifecycleState, options: PublishOptions): void {
  const c = lifecycle.current;
  const showTimes = options.timesWhileActive || c.state !== 'active';
  const wanted: SearchAttributeUpdatePair[] = [
    { key: TokenClientId, value: lifecycle.clientId },
    // By issuer, the issuer's host: the workflow cannot read the discovery document, and IAMs
    // serve their token endpoint on their issuer's host (docs/design.md, "Discovery").
    { key: TokenEndpointHost, value: endpointHost(iamUrlOf(lifecycle.registration)) },
    { key: TokenState, value: c.state },
    { key: TokenExpiresAt, value: showTimes ? dateOrNull(c.expiresAt) : null },
    // The next token request: after a failure, the end of the backoff.
    {
      key: TokenNextRefreshAt,
      value: showTimes ? dateOrNull(c.state === 'backing_off' ? c.backoffUntil : c.nextRefreshAt) : null,
    },
    { key: TokenFailures, value: c.consecutiveFailures },
  ];
  // Each upsert is a history event and a visibility write: send only what changed since the
  // start or the last upsert (the SDK keeps both in workflowInfo, identically on replay).
  const current = wf.workflowInfo().typedSearchAttributes;
  const changed = wanted.filter(({ key, value }) => !sameAttributeValue(current.get(key), value));
  if (changed.length > 0) wf.upsertSearchAttributes(changed);
  wf.setCurrentDetails(currentDetails(lifecycle));
}

/** The workflow page's current details, most urgent first: the UI shows them in a frame of a few lines. */
export function currentDetails(lifecycle: TokenLifecycleState): string {
  const c = lifecycle.current;
  const headline =
    c.state === 'credentials_rejected'
      ? 'credentials_rejected — parked: fix the credentials, then `tokenctl resume` or reconfigure'
      : c.state === 'backing_off'
        ? `backing_off (${c.backoffReason}) until ${isoOrDash(c.backoffUntil)}`
        : c.state;
  const lines = [`**${lifecycle.clientId}** · ${headline}`, /* the UI's Markdown starts a list only after a blank line */ ''];
  if (c.lastError?.heldBack === true) lines.push(`- waiting, nothing sent: ${c.lastError.message}`);
  else if (c.lastError !== null)
    lines.push(`- last error (${c.consecutiveFailures} in a row): ${c.lastError.kind}: ${c.lastError.message}`);
  lines.push(
    c.fingerprint === null
      ? '- token: none from this registration yet'
      : `- token: generation ${c.generation}, fingerprint ${c.fingerprint}, expires ${isoOrDash(c.expiresAt)}`,
  );
  if (c.state === 'active') lines.push(`- next refresh: ${isoOrDash(c.nextRefreshAt)}`);
  if (c.credential !== undefined) lines.push(`- credential in use: ${c.credential}`);
  const { authMethod, tokenUrl, issuer } = lifecycle.registration;
  lines.push(`- endpoint (${authMethod}): ${tokenUrl ?? `discovered from the issuer ${issuer}`}`);
  return lines.join('\n');
}

/** The summary of the timer the loop sleeps on until `wakeAt`: what it waits for. */
export function waitSummary(lifecycle: TokenLifecycleState, wakeAt: number): string {
  const c = lifecycle.current;
  const at = new Date(wakeAt).toISOString();
  switch (c.state) {
    case 'backing_off':
      return `Back off after ${c.backoffReason} until ${at}`;
    case 'credentials_rejected':
      return `Probe rejected credentials again at ${at}`;
    default:
      return c.forced !== null && c.forced.notBefore <= (c.nextRefreshAt ?? Infinity)
        ? `Forced refresh (${c.forced.reason}) at ${at}`
        : `Renew generation ${c.generation} at ${at}`;
  }
}

/** The summary of the token request about to start at `now`: which generation, and why now. */
export function attemptSummary(lifecycle: TokenLifecycleState, now: number): string {
  const c = lifecycle.current;
  const why =
    c.forced !== null && c.forced.notBefore <= now
      ? c.forced.reason
      : c.state === 'backing_off'
        ? `retry ${c.consecutiveFailures} after ${c.backoffReason}`
        : c.fingerprint === null
          ? 'first token'
          : 'scheduled renewal';
  return c.generationKnown === false
    ? `Token request (${why}), numbered after the generation Redis holds`
    : `Token request for generation ${c.generation + 1} (${why})`;
}

/** Created lazily: the workflow's meter works only inside workflow context. */
let forcedRefreshCounter: MetricCounter | undefined;

/**
 * Shows a forced-refresh decision: counts it in `token_forced_refreshes{client_id, decision}` (the
 * workflow's meter emits nothing while replaying, so a request is counted once) and says in the
 * log why a request changed nothing, since a signal handler cannot answer.
 */
export function showForcedRefreshDecision(clientId: string, decision: ForcedRefreshDecision): void {
  forcedRefreshCounter ??= wf.metricMeter.createCounter(
    'token_forced_refreshes',
    'requests',
    'Forced refresh requests, by what the workflow decided',
  );
  forcedRefreshCounter.add(1, { client_id: clientId, decision });
  if (decision === 'ignored_parked') {
    wf.log.info('Forced refresh ignored: the credentials were rejected; resume or reconfigure first', { clientId });
  } else if (decision === 'ignored_stale') {
    wf.log.info('Forced refresh ignored: the rejected token was already replaced', { clientId });
  }
}

function dateOrNull(ms: number | null): Date | null {
  return ms === null ? null : new Date(ms);
}

function isoOrDash(ms: number | null): string {
  return ms === null ? '—' : new Date(ms).toISOString();
}

/** Whether a search attribute holds `wanted` already (`null` removes it: absent counts as equal). */
function sameAttributeValue(current: unknown, wanted: SearchAttributeUpdatePair['value']): boolean {
  if (wanted === null) return current === undefined;
  if (wanted instanceof Date) return current instanceof Date && current.getTime() === wanted.getTime();
  return current === wanted;
}
