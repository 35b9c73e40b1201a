/**
 * The young generation of the SDK's workflow thread, capped (docs/deployment.md, "Sizing a worker",
 * has what it saves). Node.js 24 lets each isolate's young generation grow to 128 MiB, and the
 * workflow thread, which keeps every cached workflow and turns over small objects at each
 * activation, grows it and keeps it resident.
 *
 * The SDK creates that thread without `resourceLimits`, so the cap is V8's flag, set before the
 * thread starts: a new isolate reads it, the running main thread does not. A `--max-semi-space-size`
 * given on the command line or in `NODE_OPTIONS` (which sets it for the main thread too) wins.
 */
import { setFlagsFromString } from 'node:v8';

/** MiB per semi-space: the young generation is about twice this. */
export const WORKFLOW_THREAD_MAX_SEMI_SPACE_MIB = 4;

const FLAG = '--max-semi-space-size';

/** Caps the semi-spaces of isolates started from now on, unless the operator set the flag. */
export function capWorkflowThreadYoungGeneration(): void {
  if (!semiSpaceFlagGiven([...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)])) {
    setFlagsFromString(`${FLAG}=${WORKFLOW_THREAD_MAX_SEMI_SPACE_MIB}`);
  }
}

/** Whether Node.js arguments set `--max-semi-space-size` (V8 takes `_` for `-` too). */
export function semiSpaceFlagGiven(args: readonly string[]): boolean {
  return args.map((arg) => arg.replaceAll('_', '-')).some((arg) => arg === FLAG || arg.startsWith(`${FLAG}=`));
}
