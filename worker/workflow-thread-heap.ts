/**
 * The young generation of the SDK's workflow thread (docs/deployment.md, "Sizing a worker").
 *
 * Node.js 24 lets each isolate's young generation grow to 128 MiB, and the workflow thread, which
 * keeps every cached workflow and turns over small objects at each activation, grows it and keeps it
 * resident. Capped at 4 MiB a semi-space (bench:worker, 500 clients renewing 20 s tokens): RSS per
 * client 1100–1200 → 780–900 KiB, CPU per renewal within the runs' noise; with the main thread's
 * capped too (`NODE_OPTIONS=--max-semi-space-size=4`) 480–670 KiB.
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
