/**
 * The few DOM helpers the pages share. Text goes in as text (textContent), never as HTML, so nothing a
 * server or a URL returns can become markup; the pages run under `require-trusted-types-for 'script'`.
 */

type Child = Node | string | null | undefined | false;

/** Creates an element with attributes (strings; `true` for a bare attribute) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string | boolean | undefined> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

/** The element with an id, typed; a missing element is a bug in the page, so it throws. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el as T;
}

/** A status line that announces itself (role=status / role=alert set in the HTML). Empty text hides it. */
export function say(el: HTMLElement, text: string): void {
  el.textContent = text;
  el.hidden = text === '';
}

/** Disables a button while work runs, and marks its region busy for assistive technology. */
export async function busy<T>(button: HTMLButtonElement, work: () => Promise<T>): Promise<T> {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

/** "Passkey on Linux": a default passkey name from the platform the browser reports. */
export function defaultPasskeyName(): string {
  const uaData = (navigator as Navigator & { userAgentData?: { platform?: string } }).userAgentData;
  const raw = uaData?.platform || navigator.platform || '';
  const known = ['Android', 'iPhone', 'iPad', 'Mac', 'Windows', 'Linux', 'Chrome OS', 'CrOS'].find((p) => raw.toLowerCase().includes(p.toLowerCase()));
  const platform = known === 'CrOS' ? 'ChromeOS' : known === 'Mac' ? 'macOS' : (known ?? raw.split(/\s/)[0]);
  return platform ? `Passkey on ${platform}` : 'My passkey';
}
