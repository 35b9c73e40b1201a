/**
 * The states of a client's token lifecycle (docs/design.md, "States and transitions"). A module of
 * its own, without Temporal's APIs, so tokenctl can offer them as choices without loading them.
 */
export const TOKEN_STATES = ['acquiring', 'active', 'backing_off', 'credentials_rejected', 'stopped'] as const;

export type TokenState = (typeof TOKEN_STATES)[number];
