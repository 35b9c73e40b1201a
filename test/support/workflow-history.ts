/**
 * What a workflow decided, read from its history: the durations of the timers it started and the
 * token requests its IAM activity reported. Tests assert the workflow's decisions here, exactly,
 * and the times the IAM saw only from below (a request never comes early): how late a request
 * comes depends on how busy the machine is, what the workflow chose does not.
 */
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type proto from '@temporalio/proto';
import type { TokenMetadata } from '../../workflows/token-metadata.js';

type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;

/** A timer the workflow started. */
export interface StartedTimer {
  /** When the workflow started it (the server's event time, Unix ms). */
  startedAt: number;
  /** How long it was set for, in ms (`startToFireTimeout`). */
  durationMs: number;
  /** Its summary, as the Temporal UI shows it. */
  summary: string | undefined;
}

/** The events of one run of a workflow (the current run when `runId` is omitted). */
export async function historyEvents(client: Client, workflowId: string, runId?: string): Promise<HistoryEvent[]> {
  const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
  return history.events ?? [];
}

/** Every timer started in `events`, oldest first. */
export function startedTimers(events: readonly HistoryEvent[]): StartedTimer[] {
  return events.flatMap((event) => {
    const attributes = event.timerStartedEventAttributes;
    if (!attributes) return [];
    const timeout = attributes.startToFireTimeout;
    const summary = event.userMetadata?.summary;
    return [
      {
        startedAt: millis(event.eventTime),
        durationMs: Number(timeout?.seconds ?? 0) * 1000 + Math.round((timeout?.nanos ?? 0) / 1e6),
        summary: summary ? defaultPayloadConverter.fromPayload<string>(summary) : undefined,
      },
    ];
  });
}

/** The marker the SDK's core records for each local activity's outcome. */
const LOCAL_ACTIVITY_MARKER = 'core_local_activity';

/** What the core writes in a local activity's marker besides its result (the fields used here). */
interface LocalActivityMarkerData {
  activity_type?: string;
}

/** How a token request shows in a history: queued from the IAM task queue, or run as a local activity. */
export type TokenRequestShape = 'queued' | 'local';

/** A token request of the `acquireToken` activity in a history. */
export interface TokenRequestEvent {
  /** Where it is in the events passed: the scheduled event of a queued one, the marker of a local one. */
  index: number;
  shape: TokenRequestShape;
  /** What it returned: a succeeded request's metadata (never the token); undefined when it failed or is in flight. */
  result: TokenMetadata | undefined;
  /** The failure kind it failed with (`ApplicationFailure.type`, e.g. `login_budget`); undefined otherwise. */
  failureType: string | undefined;
}

/**
 * Every `acquireToken` request in `events`, oldest first, in either shape (docs/design.md, "Local
 * renewals"): a queued one is scheduled and later completes; a local one is a single marker.
 */
export function tokenRequests(events: readonly HistoryEvent[]): TokenRequestEvent[] {
  const completions = new Map<string, TokenMetadata>();
  const failures = new Map<string, string>();
  for (const event of events) {
    const completed = event.activityTaskCompletedEventAttributes;
    const payload = completed?.result?.payloads?.[0];
    if (completed && payload)
      completions.set(String(completed.scheduledEventId), defaultPayloadConverter.fromPayload<TokenMetadata>(payload));
    const failed = event.activityTaskFailedEventAttributes;
    if (failed) failures.set(String(failed.scheduledEventId), failureType(failed.failure));
  }
  return events.flatMap((event, index): TokenRequestEvent[] => {
    if (event.activityTaskScheduledEventAttributes?.activityType?.name === 'acquireToken') {
      const id = String(event.eventId);
      return [{ index, shape: 'queued', result: completions.get(id), failureType: failures.get(id) }];
    }
    const marker = event.markerRecordedEventAttributes;
    if (marker?.markerName !== LOCAL_ACTIVITY_MARKER) return [];
    const data = marker.details?.data?.payloads?.[0];
    if (data === undefined || defaultPayloadConverter.fromPayload<LocalActivityMarkerData>(data).activity_type !== 'acquireToken')
      return [];
    const result = marker.details?.result?.payloads?.[0];
    return [
      {
        index,
        shape: 'local',
        result: result === undefined ? undefined : defaultPayloadConverter.fromPayload<TokenMetadata>(result),
        failureType: marker.failure ? failureType(marker.failure) : undefined,
      },
    ];
  });
}

/** The failure kind of an activity's failure: its own, or its cause's (a failure wrapped by the SDK). */
function failureType(failure: proto.temporal.api.failure.v1.IFailure | null | undefined): string {
  return failure?.applicationFailureInfo?.type ?? failure?.cause?.applicationFailureInfo?.type ?? 'unknown';
}

/** The metadata of every token request that succeeded in `events` (never the token), oldest first. */
export function issuedTokenMetadata(events: readonly HistoryEvent[]): TokenMetadata[] {
  return tokenRequests(events).flatMap((request) => (request.result === undefined ? [] : [request.result]));
}

function millis(time: HistoryEvent['eventTime']): number {
  return Number(time?.seconds ?? 0) * 1000 + Math.round((time?.nanos ?? 0) / 1e6);
}

/**
 * The renewals the workflow scheduled, from its timers' summaries (`Renew generation N at <ISO
 * time>`, as the Temporal UI shows them): which generation each renews, and when it is due.
 */
export function scheduledRenewals(events: readonly HistoryEvent[]): { generation: number; at: number }[] {
  return startedTimers(events).flatMap(({ summary }) => {
    const match = /^Renew generation (\d+) at (\S+)$/.exec(summary ?? '');
    return match ? [{ generation: Number(match[1]), at: Date.parse(match[2]!) }] : [];
  });
}

/**
 * The first renewal the workflow scheduled: when it is due, and how far into the first token's
 * lifetime that is, counted from when the first request left the worker (0.85 less up to 5 %
 * jitter by default).
 */
export async function firstRenewal(client: Client, workflowId: string, lifetimeSeconds: number): Promise<{ at: number; fraction: number }> {
  const events = await historyEvents(client, workflowId);
  const [firstRequest] = issuedTokenMetadata(events);
  const [renewal] = scheduledRenewals(events);
  if (firstRequest === undefined || renewal?.generation !== 1)
    throw new Error(`${workflowId} has no first token and renewal in its history`);
  return { at: renewal.at, fraction: (renewal.at - firstRequest.requestStartedAt) / (lifetimeSeconds * 1000) };
}
