import { invalid, unavailable } from '../errors.js';
import type { CodeDelivery } from './registration-codes.js';

/** The values a registration link template may use. */
interface LinkValues {
  UserID: string;
  OrgID: string;
  CodeID: string;
  Code: string;
}

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;
const KNOWN = new Set(['.UserID', '.OrgID', '.CodeID', '.Code']);

/** The hosted registration page, used when a request gives no `url_template`. */
export function defaultLinkTemplate(issuer: string): string {
  return `${issuer.replace(/\/+$/, '')}/register?user={{.UserID}}&code_id={{.CodeID}}&code={{.Code}}`;
}

/**
 * Checks a link template without rendering it: only `{{.UserID}}`, `{{.OrgID}}`, `{{.CodeID}}` and
 * `{{.Code}}` (ZITADEL's Go-template names), and it must render to an absolute http(s) URL.
 */
export function checkLinkTemplate(template: string): void {
  renderLinkTemplate(template, { UserID: 'u', OrgID: 'o', CodeID: 'c', Code: 'x' });
}

/** The hosted page's registration link for a code (what `send_link` renders by default). */
export function registrationLink(issuer: string, values: { userId: string; orgId: string; codeId: string; code: string }): string {
  return renderLinkTemplate(defaultLinkTemplate(issuer), { UserID: values.userId, OrgID: values.orgId, CodeID: values.codeId, Code: values.code });
}

/** Renders a link template; values are URL-encoded, since they land in a URL. */
function renderLinkTemplate(template: string, values: LinkValues): string {
  const url = template.replace(PLACEHOLDER, (_, name: string) => {
    if (!KNOWN.has(name)) throw invalid(`send_link.url_template: unknown placeholder {{${name}}} (use {{.UserID}}, {{.OrgID}}, {{.CodeID}}, {{.Code}})`);
    return encodeURIComponent(values[name.slice(1) as keyof LinkValues]);
  });
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid('send_link.url_template: does not render to an absolute URL');
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw invalid('send_link.url_template: must be an http(s) URL');
  return url;
}

/** What the webhook receives (JSON, POST). */
interface LinkWebhookPayload {
  type: 'passkey_registration_link';
  user_id: string;
  org_id: string;
  code_id: string;
  url: string;
  expires_at: string;
  username: string;
  email: string;
}

/**
 * A delivery that POSTs the rendered link to the configured webhook, which sends it on (mail, chat...).
 * Anything but a 2xx within the timeout is UNAVAILABLE: the caller may retry, and no code is stored.
 */
export function webhookDelivery(webhookUrl: string, template: string, timeoutMs = 5000): CodeDelivery {
  return {
    async deliver({ user, codeId, code, expiresAt }) {
      const url = renderLinkTemplate(template, { UserID: user.id, OrgID: user.org_id, CodeID: codeId, Code: code });
      const payload: LinkWebhookPayload = {
        type: 'passkey_registration_link',
        user_id: user.id,
        org_id: user.org_id,
        code_id: codeId,
        url,
        expires_at: expiresAt.toISOString(),
        username: user.username,
        email: user.email,
      };
      let status: number;
      try {
        const res = await fetch(webhookUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(payload),
          signal: AbortSignal.timeout(timeoutMs),
          redirect: 'error',
        });
        status = res.status;
        await res.body?.cancel();
      } catch (err) {
        const reason = (err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : 'could not connect';
        throw unavailable(`the registration link could not be delivered: the link webhook ${reason}; retry later`);
      }
      if (status < 200 || status > 299) {
        throw unavailable(`the registration link could not be delivered: the link webhook answered HTTP ${status}; retry later`);
      }
    },
  };
}
