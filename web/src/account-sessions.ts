/**
 * The account page's "Where you're signed in": the user's active sessions (device, created, last
 * used, this device), sign out of one, and sign out of all other devices (DeleteSessions, which keeps
 * the session of the token it is called with).
 */
import { timestampDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import type { Session } from '../../gen/passkeyd/session/v2/session_pb.js';
import { bearer, sessions } from './api.js';
import { busy, byId, h, say } from './dom.js';
import type { CodeWords } from './messages.js';
import type { StoredSession } from './session-store.js';

/** What the account page lends this section: its session, its call wrapper and its error wording. */
interface SessionsSection {
  session: () => StoredSession;
  authed: <T>(call: () => Promise<T>) => Promise<T>;
  failure: (err: unknown, words: CodeWords, fallback: string) => string;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** "Chrome on Linux" from a User-Agent string (or the description a login app sent, as it is). */
function deviceOf(description: string | undefined): string {
  if (!description) return 'Unknown device';
  if (!/Mozilla\/|AppleWebKit|Gecko\//.test(description)) return description.slice(0, 100);
  const browser = /Edg\//.test(description)
    ? 'Edge'
    : /Firefox\//.test(description)
      ? 'Firefox'
      : /Chrom(e|ium)\//.test(description)
        ? 'Chrome'
        : /Safari\//.test(description)
          ? 'Safari'
          : 'A browser';
  const os = [
    ['Android', 'Android'],
    ['iPhone', 'iPhone'],
    ['iPad', 'iPad'],
    ['Mac OS X', 'macOS'],
    ['Windows', 'Windows'],
    ['CrOS', 'ChromeOS'],
    ['Linux', 'Linux'],
  ].find(([needle]) => description.includes(needle!))?.[1];
  return os ? `${browser} on ${os}` : browser;
}

function when(ts: Timestamp | undefined): Node {
  if (!ts) return document.createTextNode('Unknown');
  const d = timestampDate(ts);
  return h('time', { datetime: d.toISOString() }, dateFormat.format(d));
}

/** Shows the signed-in user's sessions and wires its buttons; call once the page knows its session. */
export function createSessionsSection(s: SessionsSection): { refresh(): Promise<void> } {
  const list = byId<HTMLUListElement>('sessions');
  const status = byId('sessions-status');
  const error = byId('sessions-error');
  const others = byId<HTMLButtonElement>('sign-out-others');

  function item(x: Session): HTMLLIElement {
    const current = x.id === s.session().sessionId;
    const device = deviceOf(x.userAgent?.description);
    const heading = h('h3', { id: `session-${x.id}` }, device, current ? ' (this device)' : '');
    const details = h(
      'dl',
      {},
      h('dt', {}, 'Signed in'),
      h('dd', {}, when(x.factors?.webAuthN?.verifiedAt ?? x.creationDate)),
      h('dt', {}, 'Last used'),
      h('dd', {}, when(x.changeDate)),
    );
    const li = h('li', { class: 'session', 'aria-labelledby': heading.id, 'data-session-id': x.id, 'data-current': current ? 'true' : undefined }, heading, details);
    if (!current) {
      const out = h('button', { type: 'button', class: 'secondary', 'aria-label': `Sign out ${device}` }, 'Sign out');
      out.addEventListener('click', () => {
        void busy(out, async () => {
          try {
            await s.authed(() => sessions.deleteSession({ sessionId: x.id }, bearer(s.session().accessToken)));
            await refresh();
            say(status, `Signed out ${device}.`);
          } catch (err) {
            say(error, s.failure(err, { [Code.NotFound]: 'That device was already signed out.' }, 'Signing out that device did not work. Try again.'));
          }
        });
      });
      li.append(h('div', { class: 'actions' }, out));
    }
    return li;
  }

  async function refresh(): Promise<void> {
    const me = s.session();
    const r = await s.authed(() =>
      sessions.listSessions({ queries: [{ query: { case: 'userIdQuery', value: { id: me.userId } } }], query: { limit: 100 } }, bearer(me.accessToken)),
    );
    // Only sessions that completed a passkey login: a login begun elsewhere with this name is no device of the user.
    const active = r.sessions.filter((x) => x.factors?.webAuthN?.verifiedAt !== undefined);
    list.replaceChildren(...active.map(item));
    others.hidden = !active.some((x) => x.id !== me.sessionId);
  }

  others.addEventListener('click', () => {
    say(error, '');
    void busy(others, async () => {
      try {
        const me = s.session();
        const r = await s.authed(() => sessions.deleteSessions({ userId: me.userId }, bearer(me.accessToken)));
        await refresh();
        say(status, r.sessionIds.length === 1 ? 'Signed out of 1 other device.' : `Signed out of ${r.sessionIds.length} other devices.`);
      } catch (err) {
        say(error, s.failure(err, {}, 'Signing out of the other devices did not work. Try again.'));
      }
    });
  });

  return { refresh };
}
