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

/** The metadata of every token request that succeeded in `events` (never the token), oldest first. */
export function issuedTokenMetadata(events: readonly HistoryEvent[]): TokenMetadata[] {
  const acquireTokenIds = new Set(
    events
      .filter((event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'acquireToken')
      .map((event) => String(event.eventId)),
  );
  return events.flatMap((event) => {
    const completed = event.activityTaskCompletedEventAttributes;
    const payload = completed?.result?.payloads?.[0];
    if (!completed || !payload || !acquireTokenIds.has(String(completed.scheduledEventId))) return [];
    return [defaultPayloadConverter.fromPayload<TokenMetadata>(payload)];
  });
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
