/**
 * Error messages of values of unknown type (a `catch` clause's), for log lines and messages that
 * name a cause. The one place that turns an unknown thrown value into text.
 */

/** The message of an `Error`, else the value as a string. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The message of the deepest `cause` of an error: it names the socket or file error ("connect
 * ECONNREFUSED 127.0.0.1:7233") where the outer one says only "failed to connect".
 */
export function innermostMessage(err: unknown): string {
  let e: unknown = err;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  return errorMessage(e);
}
