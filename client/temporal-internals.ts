/**
 * The Temporal SDK's internal helpers this package relies on, in one place: they are not public
 * API, so an SDK upgrade may move or change them without notice. test/unit/temporal-internals.test.ts
 * fails when it does. Used to read a registration from a workflow's history with no worker up
 * (docs/design.md, "tokenctl and the admin API").
 */
import type { Duration, LoadedDataConverter, Payload } from '@temporalio/common';
import { decodeArrayFromPayloads } from '@temporalio/common/lib/internal-non-workflow/index.js';
import { msToTs, optionalTsToMs, type Timestamp } from '@temporalio/common/lib/time.js';

/**
 * The values of a history event's payloads (a workflow's input, a signal's arguments), decoded as
 * the client's data converter encoded them: its payload codecs, then its payload converter.
 */
export function decodePayloads(converter: LoadedDataConverter, payloads: Payload[] | null | undefined): Promise<unknown[]> {
  return decodeArrayFromPayloads(converter, payloads);
}

/** Milliseconds of a protobuf `Duration` or `Timestamp` (seconds may be a Long), or undefined when absent. */
export function protoTimeToMs(time: Timestamp | null | undefined): number | undefined {
  return optionalTsToMs(time);
}

/** A protobuf `Duration` of a duration in milliseconds or as text (`'3 days'`), for a request to Temporal's API. */
export function toProtoDuration(duration: Duration): Timestamp {
  return msToTs(duration);
}
