import type { Kysely } from 'kysely';
import type { TokenService } from '../auth/tokens.js';
import type { Config } from '../config/config.js';
import { managesSessionsOf, type Principal } from '../auth/callers.js';
import { denied, invalid, notFound } from '../errors.js';
import { appendEvents } from '../store/events.js';
import { insertSession } from '../store/login.js';
import { findAllowList, findOrgOfLogin, findSessionContext } from '../store/login-reads.js';
import type { ChallengesTable, Database, SessionUserAgent } from '../store/schema.js';
import { replaceChallenge } from '../store/sessions.js';
import { inTransaction } from '../store/transaction.js';
import { newId, randomBytesPooled } from '../ids.js';
import { requestOptions } from '../webauthn/authentication-response.js';
import { base64url } from '../webauthn/base64url.js';
import { resolveRpId } from '../webauthn/relying-party.js';
import { defaultOrgId } from './bootstrap.js';
import { event } from './events.js';
import { createFinishLogin, knownCredentials, type FinishedLogin, type FinishLoginInput } from './login-finish.js';
import { ssoRefusal } from './login-policy.js';
import { createPseudoCredentials, type CredentialDescriptor, type LoginLookup } from './pseudo-credentials.js';
import { checkSessionCaller, contextChangeOf, isSessionManager, lifetimeOf, METADATA_MAX_KEYS, metadataChange, metadataFull, setSessionContext } from './session-context.js';
import { hashSessionToken, sessionAggregate } from './sessions.js';
import type { ChangeDetails } from './types.js';

type UserVerification = ChallengesTable['user_verification'];

/** What CreateSession asks for. */
interface StartLoginInput {
  /** checks.user; undefined for a usernameless (discoverable credential) login. */
  user: LoginLookup | undefined;
  /** challenges.web_auth_n; undefined when no challenge is wanted yet. */
  webauthn: { domain: string; userVerification: UserVerification | undefined } | undefined;
  /** At most the configured lifetime. */
  lifetimeSeconds: number | undefined;
  /** The device, as stored (see userAgentOf). */
  userAgent: SessionUserAgent;
  metadata: Record<string, Uint8Array>;
  /** The caller, when it sent a Bearer credential: a session manager opens sessions for its organization's users only. */
  caller?: Principal | undefined;
}

interface StartedLogin {
  sessionId: string;
  sessionToken: string;
  details: ChangeDetails;
  /** `{"publicKey": PublicKeyCredentialRequestOptionsJSON}` when a challenge was asked for. */
  requestOptions: Record<string, unknown> | undefined;
}

interface ChallengeInput {
  sessionId: string;
  sessionToken: string | undefined;
  webauthn: { domain: string; userVerification: UserVerification | undefined };
  caller?: Principal | undefined;
}

interface ChallengedSession {
  details: ChangeDetails;
  requestOptions: Record<string, unknown>;
}

/** Passkey login: CreateSession's challenge, SetSession's assertion check, and the access token. */
export interface Login {
  start(input: StartLoginInput, creator: string): Promise<StartedLogin>;
  challenge(input: ChallengeInput, creator: string): Promise<ChallengedSession>;
  finish(input: FinishLoginInput, creator: string): Promise<FinishedLogin>;
  /** SetSession with a lifetime or metadata and nothing else (or before a challenge). */
  setContext(input: ContextInput, creator: string): Promise<ChangeDetails>;
}

interface ContextInput {
  sessionId: string;
  sessionToken: string | undefined;
  caller?: Principal | undefined;
  lifetimeSeconds: number | undefined;
  metadata: Record<string, Uint8Array>;
}

export interface LoginDeps {
  db: Kysely<Database>;
  config: Config;
  tokens: TokenService;
}

/**
 * Builds the login flow. Per process it keeps only what never changes: the default organization
 * (owner of every session aggregate) and the pseudo-credential secret.
 */
export function createLogin({ db, config, tokens }: LoginDeps): Login {
  const pseudo = createPseudoCredentials(db);
  const known = knownCredentials();
  let owner: Promise<string> | undefined;
  // Sessions belong to the instance's default organization from the start: owning them by the user's
  // organization would put that organization into CreateSession's `details` and tell an anonymous
  // caller that the login name exists. The session row's org_id says whose user it is.
  const sessionOwner = (): Promise<string> => {
    owner ??= defaultOrgId(db).catch((err: unknown) => {
      owner = undefined;
      throw err;
    });
    return owner;
  };

  const challengeTtlMs = config.challengeTtlSeconds * 1000;

  /** The user's READY passkeys for an RP ID, or pseudo ones when there are none (or no such user). */
  async function allowList(rpId: string, lookup: LoginLookup): Promise<CredentialDescriptor[]> {
    const [found, digest] = await Promise.all([findAllowList(db, rpId, lookup), pseudo.digest(lookup)]);
    const allow = found.credentials.map((c) => ({ id: base64url(c.id), transports: c.transports }));
    return allow.length ? allow : pseudo.derive(rpId, digest);
  }

  async function optionsFor(rpId: string, userVerification: UserVerification, allow: CredentialDescriptor[]) {
    const challenge = randomBytesPooled(32);
    const publicKey = requestOptions({ rpId, challenge, allow, userVerification, timeoutMs: challengeTtlMs });
    return { publicKey, challenge: publicKey.challenge as string };
  }

  /** A session manager scoped to one organization opens sessions for that organization's users only. */
  async function checkManagerMayOpen(caller: Principal | undefined, lookup: LoginLookup | undefined): Promise<void> {
    if (!caller || !lookup || !isSessionManager(caller) || managesSessionsOf(caller, null)) return;
    const org = await findOrgOfLogin(db, lookup);
    // An unknown name gets its stand-in session, as for anyone (no enumeration through this path either).
    if (org !== undefined && !managesSessionsOf(caller, org)) throw denied('a session manager opens sessions for users of its own organization only');
  }

  return {
    async start(input, creator) {
      if (!input.user && !input.webauthn) throw invalid('checks.user or challenges.web_auth_n is required');
      const rpId = resolveRpId(config, input.webauthn?.domain);
      const lifetime = lifetimeOf(input.lifetimeSeconds, config) ?? config.sessionTtlSeconds;
      const metadata = metadataChange(input.metadata).set;
      if (Object.keys(metadata).length > METADATA_MAX_KEYS) throw metadataFull();
      await checkManagerMayOpen(input.caller, input.user);
      const [digest, ownerId] = await Promise.all([input.user ? pseudo.digest(input.user) : undefined, sessionOwner()]);
      // A login by name reads the name's login policy (an unknown name's: the default organization's, as
      // availability answers) in the session's own statement, which refuses an SSO organization and takes
      // the user verification from a policy that requires it (the request cannot weaken that).
      const policy = input.user && input.webauthn ? { asked: input.webauthn.userVerification, fallback: config.userVerification, ssoRequired: ssoRefusal } : undefined;
      const requested = input.webauthn ? (input.webauthn.userVerification ?? config.userVerification) : undefined;
      // The challenge is stored by the same statement that finds the user's passkeys, so it is drawn first.
      const challenge = input.webauthn ? randomBytesPooled(32) : undefined;
      const now = Date.now();
      const id = newId();
      const token = randomBytesPooled(32).toString('base64url');
      const expiresAt = new Date(now + lifetime * 1000);
      // The user id (added by the statement) only when known: events are read by admins, never by the
      // anonymous caller. With a policy, the statement adds the user verification too.
      const added = event('session.added', {
        usernameless: !input.user,
        ...(challenge ? { rp_id: rpId, ...(policy ? {} : { user_verification: requested }) } : {}),
        expires_at: expiresAt.toISOString(),
        user_agent: input.userAgent,
        ...(Object.keys(metadata).length ? { metadata_keys: Object.keys(metadata) } : {}),
      });
      const opened = await insertSession(
        db,
        {
          id,
          tokenHash: hashSessionToken(token),
          lookup: input.user,
          rpId,
          loginDigest: digest,
          owner: ownerId,
          expiresAt,
          challenge: challenge && { challenge: challenge.toString('base64url'), rpId, userVerification: requested!, expiresAt: new Date(now + challengeTtlMs) },
          userAgent: input.userAgent,
          metadata,
          policy,
        },
        [added],
        creator,
      );
      const userVerification = opened.userVerification;
      let options: Record<string, unknown> | undefined;
      if (challenge) {
        // No passkey for this name and RP ID (or no such user): stand-in credentials, the same every time.
        const allow: CredentialDescriptor[] = opened.credentials.length
          ? opened.credentials.map((c) => {
              const id = base64url(c.id);
              if (c.publicKey && !known.has(id)) known.set(id, { passkeyId: c.passkeyId, userId: opened.userId!, orgId: opened.orgId!, rpId, publicKey: c.publicKey });
              return { id, transports: c.transports };
            })
          : digest
            ? await pseudo.derive(rpId, digest)
            : [];
        const publicKey = requestOptions({ rpId, challenge, allow, userVerification: userVerification!, timeoutMs: challengeTtlMs });
        options = { publicKey };
      }
      return { sessionId: id, sessionToken: token, details: opened.details, requestOptions: options };
    },

    async challenge(input, creator) {
      const session = await findSessionContext(db, input.sessionId);
      if (!session || session.expires_at.getTime() <= Date.now()) throw notFound(`session ${input.sessionId}`);
      // A challenge replaces the open one; only the holder of the session token (or its organization's
      // session manager) may do that.
      checkSessionCaller(session, input.sessionToken, input.caller, 'session_token is required to request a challenge for this session');
      const rpId = resolveRpId(config, input.webauthn.domain);
      const userVerification = input.webauthn.userVerification ?? config.userVerification;
      let allow: CredentialDescriptor[] = [];
      if (session.user_id) allow = await allowList(rpId, { userId: session.user_id });
      // A session for a name without passkeys offers the same pseudo credentials as CreateSession did.
      if (!allow.length && session.login_digest) allow = await pseudo.derive(rpId, session.login_digest);
      const options = await optionsFor(rpId, userVerification, allow);
      const now = Date.now();
      const details = await inTransaction(db, async (trx) => {
        // The append locks the session's row (its aggregate's), then the challenge is replaced in it.
        const appended = await appendEvents(
          trx,
          sessionAggregate(session.id, session.owner),
          [event('session.webauthn.challenged', { rp_id: rpId, user_verification: userVerification })],
          creator,
        );
        await replaceChallenge(trx, session.id, { challenge: options.challenge, rpId, userVerification, expiresAt: new Date(now + challengeTtlMs) });
        return appended;
      });
      return { details, requestOptions: { publicKey: options.publicKey } };
    },

    finish: createFinishLogin({ db, config, tokens, known, sessionOwner }),

    async setContext(input, creator) {
      const session = await findSessionContext(db, input.sessionId);
      if (!session || session.expires_at.getTime() <= Date.now()) throw notFound(`session ${input.sessionId}`);
      checkSessionCaller(session, input.sessionToken, input.caller, 'session_token is missing or does not match this session');
      const { change, events } = contextChangeOf(session, input, config, Date.now());
      if (!change) throw invalid('checks.web_auth_n, challenges.web_auth_n, lifetime or metadata is required');
      return setSessionContext(db, session, change, events, creator);
    },
  };
}
