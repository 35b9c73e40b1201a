/**
 * client/temporal-internals.ts: the Temporal SDK's internal helpers still do what the admin API
 * relies on. These fail first after an SDK upgrade that moves or changes them.
 */
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter, type PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';
import { describe, expect, test } from 'vitest';
import { decodePayloads, protoTimeToMs, toProtoDuration } from '../../client/temporal-internals.js';

const { Payload } = proto.temporal.api.common.v1;
const { Duration, Timestamp } = proto.google.protobuf;
const WRAPPED = 'binary/test-wrapped';

/** A codec that wraps each payload in another, as an encrypting codec would. */
const wrappingCodec: PayloadCodec = {
  encode(payloads) {
    const encoding = new TextEncoder().encode(WRAPPED);
    return Promise.resolve(payloads.map((payload) => ({ metadata: { encoding }, data: Payload.encode(payload).finish() })));
  },
  decode(payloads) {
    return Promise.resolve(
      payloads.map((payload) => {
        if (new TextDecoder().decode(payload.metadata?.encoding ?? undefined) !== WRAPPED) throw new Error('not a wrapped payload');
        return Payload.decode(payload.data!);
      }),
    );
  },
};

describe('decodePayloads', () => {
  // The converter a TokenAdmin passes: the client's own, built from its data converter options.
  // A lazy connection connects on its first call, and this test makes none.
  const client = new Client({
    connection: Connection.lazy({ address: '127.0.0.1:7233' }),
    dataConverter: { payloadCodecs: [wrappingCodec] },
  });
  const converter = client.options.loadedDataConverter;

  test("decodes a history event's payloads through the client's codecs, then its payload converter", async () => {
    const values = [{ registration: { clientId: 'billing-service', secretRef: 'env:BILLING_SECRET' } }, { scope: null }];
    const payloads = await wrappingCodec.encode(values.map((value) => defaultPayloadConverter.toPayload(value)));
    expect(new TextDecoder().decode(payloads[0]!.metadata!.encoding)).toBe(WRAPPED);

    expect(await decodePayloads(converter, payloads)).toEqual(values);
  });

  test('reads absent payloads (a signal sent without arguments) as no values', async () => {
    expect(await decodePayloads(converter, undefined)).toEqual([]);
    expect(await decodePayloads(converter, null)).toEqual([]);
  });
});

describe('protoTimeToMs', () => {
  test('reads a Duration and a Timestamp as the gRPC client decodes them (seconds as a Long)', () => {
    const duration = Duration.decode(Duration.encode(Duration.fromObject({ seconds: 90, nanos: 250_000_000 })).finish());
    const timestamp = Timestamp.decode(Timestamp.encode(Timestamp.fromObject({ seconds: 1_780_000_000, nanos: 5_000_000 })).finish());
    expect(typeof duration.seconds).not.toBe('number');

    expect(protoTimeToMs(duration)).toBe(90_250);
    expect(protoTimeToMs(timestamp)).toBe(1_780_000_000_005);
  });

  test('reads an absent field as undefined', () => {
    expect(protoTimeToMs(undefined)).toBeUndefined();
    expect(protoTimeToMs(null)).toBeUndefined();
  });
});

describe('toProtoDuration', () => {
  test('writes milliseconds and text durations as seconds and nanos', () => {
    const threeDays = toProtoDuration('3 days');
    expect([Number(threeDays.seconds), threeDays.nanos ?? 0]).toEqual([259_200, 0]);
    const oneAndAHalf = toProtoDuration(1_500);
    expect([Number(oneAndAHalf.seconds), oneAndAHalf.nanos]).toEqual([1, 500_000_000]);
  });
});
