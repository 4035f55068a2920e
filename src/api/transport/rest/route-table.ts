import { getOption, hasOption, type DescField, type DescMethod } from '@bufbuild/protobuf';
import { http as httpExt } from '../../../../gen/google/api/annotations_pb.js';
import type { HttpRule } from '../../../../gen/google/api/http_pb.js';
import { resolveFieldPath } from './field-values.js';
import { compareSpecificity, matchTemplate, parseTemplate, splitPath, TemplateError, type Bindings, type PathTemplate } from './path-template.js';

/** One HTTP binding of one RPC, compiled from a `google.api.http` rule (or one of its additional_bindings). */
export interface RestRoute<H> {
  /** Upper-case HTTP method: GET, POST, PUT, PATCH, DELETE, or a custom rule's kind. */
  httpMethod: string;
  template: PathTemplate;
  method: DescMethod;
  /** What serves the RPC (the router's universal handler, in the server). */
  handler: H;
  /** '' (no body), '*' (the whole request message) or a top-level field name. */
  body: string;
  bodyField: DescField | undefined;
  /** The response field sent as the HTTP body instead of the whole response (`response_body`). */
  responseField: DescField | undefined;
  /** Path variables: the field path as written in the template, and the resolved fields. */
  variables: { key: string; fields: DescField[] }[];
}

/** The result of looking up a request. */
type RouteLookup<H> = { kind: 'match'; route: RestRoute<H>; bindings: Bindings } | { kind: 'method-not-allowed'; allowed: string[] } | { kind: 'not-found' };

/** The compiled REST surface of a set of RPCs. */
export interface RouteTable<H> {
  routes: readonly RestRoute<H>[];
  lookup(httpMethod: string, path: string): RouteLookup<H>;
}

function* rulesOf(rule: HttpRule): Generator<HttpRule> {
  yield rule;
  // Nested additional_bindings are not allowed by the spec (they "must not" nest); one level is read.
  for (const extra of rule.additionalBindings) yield extra;
}

function compileRule<H>(method: DescMethod, handler: H, rule: HttpRule): RestRoute<H> | undefined {
  const p = rule.pattern;
  if (p.case === undefined) return undefined;
  const httpMethod = p.case === 'custom' ? p.value.kind.toUpperCase() : p.case.toUpperCase();
  const path = p.case === 'custom' ? p.value.path : p.value;
  const where = `${method.parent.typeName}/${method.name} (${httpMethod} ${path})`;
  let template: PathTemplate;
  try {
    template = parseTemplate(path);
  } catch (err) {
    throw new TemplateError(`${where}: ${(err as Error).message}`);
  }
  const variables = template.variables.map((v) => {
    const fields = resolveFieldPath(method.input, v.fieldPath);
    if (!fields) throw new TemplateError(`${where}: ${method.input.typeName} has no field ${v.fieldPath.join('.')}`);
    return { key: v.fieldPath.join('.'), fields };
  });
  let bodyField: DescField | undefined;
  if (rule.body !== '' && rule.body !== '*') {
    bodyField = method.input.fields.find((f) => f.name === rule.body);
    if (!bodyField) throw new TemplateError(`${where}: body field ${rule.body} not found in ${method.input.typeName}`);
  }
  let responseField: DescField | undefined;
  if (rule.responseBody !== '') {
    responseField = method.output.fields.find((f) => f.name === rule.responseBody);
    if (!responseField) throw new TemplateError(`${where}: response_body ${rule.responseBody} not found in ${method.output.typeName}`);
  }
  return { httpMethod, template, method, handler, body: rule.body, bodyField, responseField, variables };
}

/**
 * Compiles the `google.api.http` rules of the given RPCs (unary ones: REST has no streams). Two bindings with
 * the same method and the same template are a proto mistake and fail at start-up; otherwise, at lookup the
 * most specific template wins (literal segments beat variables).
 */
export function buildRouteTable<H extends { method: DescMethod }>(handlers: readonly H[]): RouteTable<H> {
  const routes: RestRoute<H>[] = [];
  const seen = new Map<string, string>();
  for (const handler of handlers) {
    const method = handler.method;
    if (method.methodKind !== 'unary' || !hasOption(method, httpExt)) continue;
    for (const rule of rulesOf(getOption(method, httpExt))) {
      const route = compileRule(method, handler, rule);
      if (!route) continue;
      // Variable names do not change what a template matches: normalize them for the duplicate check.
      const shape = `${route.httpMethod} ${route.template.segments.map((s) => (s.kind === 'literal' ? s.value : s.kind)).join('/')}:${route.template.verb ?? ''}`;
      const other = seen.get(shape);
      const name = `${method.parent.typeName}/${method.name}`;
      if (other) throw new TemplateError(`${name} and ${other} both bind ${route.httpMethod} ${route.template.source}`);
      seen.set(shape, name);
      routes.push(route);
    }
  }
  return {
    routes,
    lookup(httpMethod, path) {
      const split = splitPath(path);
      if (!split) return { kind: 'not-found' };
      let best: { route: RestRoute<H>; bindings: Bindings } | undefined;
      const allowed = new Set<string>();
      for (const route of routes) {
        const bindings = matchTemplate(route.template, split);
        if (!bindings) continue;
        allowed.add(route.httpMethod);
        if (route.httpMethod !== httpMethod) continue;
        if (!best || compareSpecificity(route.template, best.route.template) > 0) best = { route, bindings };
      }
      if (best) return { kind: 'match', ...best };
      if (allowed.size > 0) return { kind: 'method-not-allowed', allowed: [...allowed].sort() };
      return { kind: 'not-found' };
    },
  };
}

/** RPCs answered 201 Created over REST, as ZITADEL's gateway does (gRPC and Connect are unchanged). */
const CREATED = new Set(['passkeyd.session.v2.SessionService/CreateSession']);

/** The HTTP status of a successful REST call of an RPC. */
export function successStatusOf(m: DescMethod): 200 | 201 {
  return CREATED.has(`${m.parent.typeName}/${m.name}`) ? 201 : 200;
}
