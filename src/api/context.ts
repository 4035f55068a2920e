import { createContextKey } from '@connectrpc/connect';
import type { Principal } from '../auth/callers.js';

/** The verified caller; undefined on public RPCs called without a token. */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: 'principal' });

/** The client's address (rate limits). */
export const clientAddressKey = createContextKey<string>('unknown', { description: 'client address' });

/** Set by the REST transcoder so logs and metrics name the protocol the client used. */
export const restKey = createContextKey<boolean>(false, { description: 'rest' });
