/**
 * google.api.http path templates (https://github.com/googleapis/googleapis/blob/master/google/api/http.proto):
 *
 *   Template = "/" Segments [ Verb ] ;
 *   Segments = Segment { "/" Segment } ;
 *   Segment  = "*" | "**" | LITERAL | Variable ;
 *   Variable = "{" FieldPath [ "=" Segments ] "}" ;
 *   Verb     = ":" LITERAL ;
 *
 * `{x}` means `{x=*}`. `**` matches the rest of the path and must come last.
 */

/** One segment matcher of a compiled template. */
type Segment = { kind: 'literal'; value: string } | { kind: 'any' } | { kind: 'rest' };

/** A variable binds the segments [start, end) (end undefined: to the end of the path) to a field path. */
interface TemplateVariable {
  fieldPath: string[];
  start: number;
  end: number | undefined;
}

/** A parsed path template. */
export interface PathTemplate {
  source: string;
  segments: Segment[];
  variables: TemplateVariable[];
  verb: string | undefined;
}

/** Thrown for a template that does not follow the grammar (a proto authoring mistake). */
export class TemplateError extends Error {}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

function parseSegment(raw: string, source: string): Segment {
  if (raw === '*') return { kind: 'any' };
  if (raw === '**') return { kind: 'rest' };
  if (raw === '' || /[{}=*]/.test(raw)) throw new TemplateError(`path template ${source}: bad segment "${raw}"`);
  return { kind: 'literal', value: raw };
}

/** Parses a template; throws TemplateError when it is malformed. */
export function parseTemplate(source: string): PathTemplate {
  if (!source.startsWith('/')) throw new TemplateError(`path template ${source}: must start with "/"`);
  let body = source.slice(1);
  let verb: string | undefined;
  // The verb is a ":" after the last segment, outside any variable.
  const lastSlash = body.lastIndexOf('/');
  const lastClose = body.lastIndexOf('}');
  const colon = body.indexOf(':', Math.max(lastSlash, lastClose) + 1);
  if (colon >= 0) {
    verb = body.slice(colon + 1);
    body = body.slice(0, colon);
    if (!verb) throw new TemplateError(`path template ${source}: empty verb`);
  }
  const segments: Segment[] = [];
  const variables: TemplateVariable[] = [];
  let i = 0;
  while (i <= body.length) {
    if (body[i] === '{') {
      const close = body.indexOf('}', i);
      if (close < 0) throw new TemplateError(`path template ${source}: unclosed variable`);
      const inner = body.slice(i + 1, close);
      const eq = inner.indexOf('=');
      const fieldPath = (eq < 0 ? inner : inner.slice(0, eq)).split('.');
      if (!fieldPath.every((p) => IDENT.test(p))) throw new TemplateError(`path template ${source}: bad field path "${inner}"`);
      const start = segments.length;
      const pattern = eq < 0 ? ['*'] : inner.slice(eq + 1).split('/');
      for (const p of pattern) segments.push(parseSegment(p, source));
      const endsInRest = segments[segments.length - 1]!.kind === 'rest';
      variables.push({ fieldPath, start, end: endsInRest ? undefined : segments.length });
      i = close + 1;
    } else {
      let end = body.indexOf('/', i);
      if (end < 0) end = body.length;
      segments.push(parseSegment(body.slice(i, end), source));
      i = end;
    }
    if (i >= body.length) break;
    if (body[i] !== '/') throw new TemplateError(`path template ${source}: expected "/" at ${i + 1}`);
    i++;
  }
  segments.forEach((s, n) => {
    if (s.kind === 'rest' && n !== segments.length - 1) throw new TemplateError(`path template ${source}: "**" must be the last segment`);
  });
  return { source, segments, variables, verb };
}

/** A request path split into decoded segments, plus its verb (the part after a final ":"), computed once per request. */
export interface SplitPath {
  segments: string[];
  /** The last segment split at its final ":" (for templates with a verb). */
  verbSplit: { last: string; verb: string } | undefined;
}

/** Splits a URL path ("/v2/users/a%20b") into decoded segments; undefined when the encoding is broken. */
export function splitPath(path: string): SplitPath | undefined {
  if (!path.startsWith('/')) return undefined;
  const raw = path.slice(1).split('/');
  const segments: string[] = [];
  try {
    for (const r of raw) segments.push(decodeURIComponent(r));
  } catch {
    return undefined;
  }
  const last = raw[raw.length - 1]!;
  const c = last.lastIndexOf(':');
  const verbSplit = c >= 0 ? { last: decodeURIComponent(last.slice(0, c)), verb: decodeURIComponent(last.slice(c + 1)) } : undefined;
  return { segments, verbSplit };
}

/** Variable values by field path ("organization.org_id" → "o1"). */
export type Bindings = Map<string, string>;

/**
 * Matches a split path against a template; the variables' values, or undefined. Empty segments never
 * match a variable (a trailing slash is a different path).
 */
export function matchTemplate(t: PathTemplate, path: SplitPath): Bindings | undefined {
  let segs = path.segments;
  if (t.verb !== undefined) {
    if (!path.verbSplit || path.verbSplit.verb !== t.verb) return undefined;
    segs = [...segs.slice(0, -1), path.verbSplit.last];
  }
  const tail = t.segments[t.segments.length - 1];
  const hasRest = tail?.kind === 'rest';
  const fixed = hasRest ? t.segments.length - 1 : t.segments.length;
  if (hasRest ? segs.length < fixed : segs.length !== fixed) return undefined;
  for (let n = 0; n < fixed; n++) {
    const s = t.segments[n]!;
    const v = segs[n]!;
    if (s.kind === 'literal' ? s.value !== v : v === '') return undefined;
  }
  if (hasRest && segs.slice(fixed).some((v) => v === '')) return undefined;
  const bindings: Bindings = new Map();
  for (const v of t.variables) {
    const parts = segs.slice(v.start, v.end ?? segs.length);
    // A variable spanning segments keeps an escaped "/" inside a segment escaped (as http.proto asks),
    // so "a%2Fb/c" stays distinguishable from "a/b/c".
    bindings.set(v.fieldPath.join('.'), parts.length === 1 && v.end !== undefined ? parts[0]! : parts.map((p) => p.replaceAll('/', '%2F')).join('/'));
  }
  return bindings;
}

/**
 * Orders two templates that both match a path: positive when `a` is more specific. Literal segments
 * beat variables and wildcards, which beat "**"; compared left to right, so `/v2/users/human` wins over
 * `/v2/users/{user_id}`, and `/v2/users/{id}/passkeys/_search` over `/v2/users/{id}/passkeys/{passkey_id}`.
 */
export function compareSpecificity(a: PathTemplate, b: PathTemplate): number {
  const rank = (s: Segment | undefined) => (s === undefined ? -1 : s.kind === 'literal' ? 2 : s.kind === 'any' ? 1 : 0);
  const n = Math.max(a.segments.length, b.segments.length);
  for (let i = 0; i < n; i++) {
    const d = rank(a.segments[i]) - rank(b.segments[i]);
    if (d !== 0) return d;
  }
  return (a.verb === undefined ? 0 : 1) - (b.verb === undefined ? 0 : 1);
}
