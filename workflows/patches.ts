/**
 * The workflow's `patched()` IDs (docs/design.md, "Versioning"): a change to the commands a
 * history replays to is made behind one, so runs recorded before it replay as they were. Each
 * patch costs a marker and an upsert of `TemporalChangeVersion` per run: one ID per release.
 */

/**
 * Renewals made cheaper: no search-attribute upsert per cycle (workflows/lifecycle-presentation.ts)
 * and each cycle's timer and token request in a scope of its own (workflows/cycle-scopes.ts).
 */
export const RENEWAL_COST_PATCH = 'renewal-cost';
