/**
 * How tokenctl prints what it reads: a status block, a table of clients, relative times. Pure
 * functions of their inputs and `now`, so the output does not depend on when it is tested.
 */
import type { TokenStatus } from '../workflows/messages.js';
import type { ApplyResult, RegisteredClient } from '../client/admin.js';

/** `in 245s`, `12s ago`, or `-` when there is no time. Seconds, so scripts and eyes agree. */
export function formatRelative(at: number | null, now: number): string {
  if (at === null) return '-';
  const seconds = Math.round((at - now) / 1000);
  return seconds >= 0 ? `in ${seconds}s` : `${-seconds}s ago`;
}

/** {@link formatRelative} followed by the absolute time, e.g. `in 245s (2026-05-01T12:00:00.000Z)`. */
export function formatInstant(at: number | null, now: number): string {
  return at === null ? '-' : `${formatRelative(at, now)} (${new Date(at).toISOString()})`;
}

/** The `status` query as an aligned block of `label  value` lines. */
export function formatStatus(status: TokenStatus, now: number): string {
  const lastError = status.lastError;
  const lines: [string, string][] = [
    ['client', status.clientId],
    ['state', status.backoffReason === null ? status.state : `${status.state} (${status.backoffReason})`],
    ['generation', String(status.generation)],
    ['fingerprint', status.fingerprint ?? '-'],
    ['expires', formatInstant(status.expiresAt, now)],
    ['next refresh', formatInstant(status.nextRefreshAt, now)],
    ['failures', String(status.consecutiveFailures)],
    ['last error', lastError === null ? '-' : `${lastError.kind}: ${lastError.message} (${formatRelative(lastError.at, now)})`],
    ['backoff ends', formatInstant(status.backoffUntil, now)],
  ];
  if (status.forcedRefreshAt !== null) lines.push(['forced refresh', formatInstant(status.forcedRefreshAt, now)]);
  if (status.credential !== undefined) lines.push(['credential', status.credential]);
  const step = nextStep(status);
  if (step !== null) lines.push(['next step', step]);
  return alignColumns(lines);
}

/**
 * What an operator does next when the workflow waits for one: a parked client is never tried
 * again on its own (docs/design.md, "Failures"), as the Temporal UI's details say too.
 */
function nextStep(status: TokenStatus): string | null {
  if (status.state !== 'credentials_rejected') return null;
  return `fix the credentials at the IAM or in the worker's reference, then tokenctl resume ${status.clientId} (or tokenctl reconfigure ${status.clientId} --secret REF …)`;
}

/** One line after `refresh --wait`: what the new token is. */
export function formatRefreshed(status: TokenStatus, now: number): string {
  return `Refreshed ${status.clientId}: generation ${status.generation}, fingerprint ${status.fingerprint ?? '-'}, expires ${formatInstant(status.expiresAt, now)}`;
}

/** The `list` table, a header row first; times relative to `now`. */
export function formatClientTable(rows: readonly RegisteredClient[], now: number): string {
  return alignColumns([
    ['CLIENT', 'STATE', 'EXPIRES', 'NEXT REFRESH', 'FAILURES', 'ENDPOINT'],
    ...rows.map((row) => [
      row.clientId,
      row.state,
      formatRelative(row.expiresAt, now),
      formatRelative(row.nextRefreshAt, now),
      String(row.failures),
      row.tokenEndpointHost ?? '-',
    ]),
  ]);
}

/** Pads every column but the last to its widest cell, two spaces apart. */
function alignColumns(rows: readonly string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows
    .map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  '))
    .join('\n');
}

/** The summary of `apply`: one line per client that changed or not, then the counts. */
export function formatApplyResult(result: ApplyResult, fileName: string, dryRun: boolean): string {
  const rows: string[][] = [
    ...result.created.map((clientId) => [dryRun ? 'would create' : 'created', clientId]),
    ...result.updated.map(({ clientId, fields }) => [dryRun ? 'would update' : 'updated', `${clientId} (${fields.join(', ')})`]),
    ...result.unchanged.map((clientId) => ['unchanged', clientId]),
    ...result.removed.map((clientId) => [dryRun ? 'would remove' : 'removed', clientId]),
    ...result.failed.map(({ clientId, action }) => ['failed', `${clientId} (${action})`]),
  ];
  const counts = `${result.created.length} created, ${result.updated.length} updated, ${result.unchanged.length} unchanged, ${result.removed.length} removed${result.failed.length > 0 ? `, ${result.failed.length} failed` : ''}`;
  const total = `${dryRun ? 'Dry run of' : 'Applied'} ${fileName}: ${counts}.`;
  const lines = rows.length === 0 ? [total] : [alignColumns(rows), total];
  if (result.unproven.length > 0) lines.push(formatUnproven(result.unproven.length, dryRun));
  return lines.join('\n');
}

/**
 * What an operator should know about new or changed credentials right away: the worker tries
 * them one at a time per IAM host, within its failed-login budget, so a wrong file shows as a
 * few rejections in the first minute, not as a blocked IP.
 */
function formatUnproven(count: number, dryRun: boolean): string {
  const clients = count === 1 ? '1 new or changed client has credentials' : `${count} new or changed clients have credentials`;
  return (
    `${clients} the IAM has not accepted yet${dryRun ? ' (after applying)' : ''}: the worker tries them one at a time per IAM host ` +
    'and holds them back once the host has had LOGIN_BUDGET_MAX_REJECTIONS rejected logins in its window. ' +
    'Rejected ones park: tokenctl list --state credentials_rejected'
  );
}
