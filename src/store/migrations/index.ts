import type { Migration } from 'kysely/migration';
import * as initial from './2026-11-22-001-initial.js';
import * as passkeysSessions from './2026-11-22-002-passkeys-sessions.js';
import * as sessionLogin from './2026-11-22-004-session-login.js';
import * as refuseFunction from './2026-11-22-005-refuse-function.js';
import * as machineUsers from './2026-11-30-006-machine-users.js';
import * as sessionContext from './2026-11-30-007-session-context.js';
import * as loginPolicy from './2026-11-30-008-login-policy.js';
import * as keyRetirement from './2026-11-30-009-key-retirement.js';
import * as readyPasskeys from './2026-12-01-010-ready-passkeys.js';
import * as sessionChallenge from './2026-12-01-011-session-challenge.js';
import * as dropEventTypeIndex from './2026-12-01-012-drop-event-type-index.js';
import * as sessionsOwnAggregate from './2026-12-01-013-sessions-own-aggregate.js';

/** Every migration, by date-prefixed name; Kysely applies them in name order. */
export const migrations: Record<string, Migration> = {
  '2026-11-22-001-initial': initial,
  '2026-11-22-002-passkeys-sessions': passkeysSessions,
  '2026-11-22-004-session-login': sessionLogin,
  '2026-11-22-005-refuse-function': refuseFunction,
  '2026-11-30-006-machine-users': machineUsers,
  '2026-11-30-007-session-context': sessionContext,
  '2026-11-30-008-login-policy': loginPolicy,
  '2026-11-30-009-key-retirement': keyRetirement,
  '2026-12-01-010-ready-passkeys': readyPasskeys,
  '2026-12-01-011-session-challenge': sessionChallenge,
  '2026-12-01-012-drop-event-type-index': dropEventTypeIndex,
  '2026-12-01-013-sessions-own-aggregate': sessionsOwnAggregate,
};
