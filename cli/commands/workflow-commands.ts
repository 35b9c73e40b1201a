/** The tokenctl commands that read or steer the clients' workflows: refresh, status, list, patches, resume, remove. */
import type { RegisteredClient } from '../../client/admin.js';
import type { TokenState } from '../../workflows/token-states.js';
import { CliError, print } from '../cli-error.js';
import { formatClientTable, formatInstant, formatRefreshed, formatStatus } from '../format.js';
import type { Session } from '../session.js';

export async function refresh(session: Session, clientId: string, options: { wait?: true; reason?: string }): Promise<void> {
  const status = await (
    await session.admin()
  ).refresh(clientId, { wait: options.wait === true, ...(options.reason !== undefined && { reason: options.reason }) });
  print(
    status === null ? `Refresh of ${clientId} requested. Follow it with: tokenctl status ${clientId}` : formatRefreshed(status, Date.now()),
  );
}

export async function status(session: Session, clientId: string | undefined, options: { json?: true }): Promise<void> {
  if (clientId === undefined) return list(session, options);
  const current = await (await session.admin()).status(clientId);
  print(options.json ? JSON.stringify(current, null, 2) : formatStatus(current, Date.now()));
}

export async function list(session: Session, options: { state?: TokenState; json?: true | undefined }): Promise<void> {
  const listed = await (await session.admin()).list(options.state === undefined ? {} : { state: options.state });
  const rows = await withStoredTimes(session, listed);
  print(options.json ? JSON.stringify(rows, null, 2) : formatClientTable(rows, Date.now()));
}

/**
 * The rows with each active client's expiry and renewal point read from Redis, where the worker
 * writes them with the token: its search attributes carry no times while active (docs/design.md,
 * "In the Temporal UI"). Without Redis the list is still shown, with a warning.
 */
async function withStoredTimes(session: Session, rows: RegisteredClient[]): Promise<RegisteredClient[]> {
  const unknown = (row: RegisteredClient) => row.state === 'active' && (row.expiresAt === null || row.nextRefreshAt === null);
  if (!rows.some(unknown)) return rows;
  let store;
  try {
    store = await session.store();
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    process.stderr.write(`warning: expiry and next refresh of active clients not shown: ${err.message}\n`);
    return rows;
  }
  return Promise.all(
    rows.map(async (row) => {
      if (!unknown(row)) return row;
      const times = await store.readTimes(row.clientId);
      return { ...row, expiresAt: row.expiresAt ?? times?.expiresAt ?? null, nextRefreshAt: row.nextRefreshAt ?? times?.refreshAt ?? null };
    }),
  );
}

/** Per patch, the running workflows that predate it (docs/design.md, "Retiring a patch"). */
export async function patches(session: Session, options: { json?: true }): Promise<void> {
  const rows = await (await session.admin()).patchRetirement();
  if (options.json) return print(JSON.stringify(rows, null, 2));
  print(
    rows
      .map(({ patch, running, predating }) =>
        predating === 0
          ? `${patch}: no running workflow of ${running} began before it; it can be retired (wf.deprecatePatch)`
          : `${patch}: ${predating} running workflow(s) of ${running} began before it; keep it`,
      )
      .join('\n'),
  );
}

export async function resume(session: Session, clientId: string): Promise<void> {
  await (await session.admin()).resume(clientId);
  print(`Resume sent to ${clientId}. Follow it with: tokenctl status ${clientId}`);
}

export async function remove(session: Session, clientId: string, options: { purge?: true }): Promise<void> {
  const stopped = await (await session.admin()).remove(clientId, { purge: options.purge === true });
  const token = options.purge
    ? 'token deleted from Redis'
    : `token left in Redis until it expires ${formatInstant(stopped.expiresAt, Date.now())}`;
  print(`Removed ${clientId} (${token}).`);
}
