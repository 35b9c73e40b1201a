/**
 * The message of the deepest `cause` of an error: it names the socket or file error ("connect
 * ECONNREFUSED 127.0.0.1:7233") where the outer one says only "failed to connect".
 */
export function innermostMessage(err: unknown): string {
  let e: unknown = err;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}
