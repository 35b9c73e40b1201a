/**
 * `value` when it is a positive safe integer; else a RangeError naming the option by its path
 * (`EndpointBreakerOptions.probeLockMs`), so a wrong setting says which one it is.
 */
export function positiveInteger(path: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`${path} must be a positive integer, got ${value}`);
  return value;
}
