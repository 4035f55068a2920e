// The layer and no-cycle rules of src/ (DESIGN.md), checked by dependency-cruiser: npm run lint:layers.
//
// Floors, bottom to top; imports go down or sideways (within a floor), never up:
//   bottom    src/errors.ts, src/log.ts, src/ids.ts, src/config/
//   store     src/store/
//   webauthn  src/webauthn/ and src/auth/ (one floor: sideways imports between them are allowed)
//   domain    src/domain/
//   api       src/api/        (the lowest floor that may import gen/, the generated protobuf code)
//   server    src/server/
//   cli       src/cli/
// and no import cycles anywhere in src/. Type-only imports count: an upward `import type` is still an
// upward dependency. test/ may import anything and is not checked here.

const BOTTOM = '^src/(errors|log|ids)\\.ts$|^src/config/';
const STORE = '^src/store/';
const WEBAUTHN_AUTH = '^src/(webauthn|auth)/';
const DOMAIN = '^src/domain/';
const API = '^src/api/';
const SERVER = '^src/server/';
const CLI = '^src/cli/';
const GEN = '^gen/';
const KNOWN = [BOTTOM, STORE, WEBAUTHN_AUTH, DOMAIN, API, SERVER, CLI].join('|');

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'layer-bottom',
      comment: 'bottom floor (src/errors.ts, src/log.ts, src/ids.ts, src/config/) imports only the bottom floor: not store, webauthn/auth, domain, api, server, cli or gen/',
      severity: 'error',
      from: { path: BOTTOM },
      to: { path: '^(src|gen)/', pathNot: BOTTOM },
    },
    {
      name: 'layer-store',
      comment: 'store floor (src/store/) imports only store and the bottom floor (errors, log, ids, config): not webauthn/auth, domain, api, server, cli or gen/',
      severity: 'error',
      from: { path: STORE },
      to: { path: '^(src|gen)/', pathNot: [STORE, BOTTOM].join('|') },
    },
    {
      name: 'layer-webauthn-auth',
      comment: 'webauthn/auth floor (src/webauthn/, src/auth/) imports only webauthn/auth, store and the bottom floor: not domain, api, server, cli or gen/',
      severity: 'error',
      from: { path: WEBAUTHN_AUTH },
      to: { path: '^(src|gen)/', pathNot: [WEBAUTHN_AUTH, STORE, BOTTOM].join('|') },
    },
    {
      name: 'layer-domain',
      comment: 'domain floor (src/domain/) imports only domain, webauthn/auth, store and the bottom floor: not api, server, cli or gen/',
      severity: 'error',
      from: { path: DOMAIN },
      to: { path: '^(src|gen)/', pathNot: [DOMAIN, WEBAUTHN_AUTH, STORE, BOTTOM].join('|') },
    },
    {
      name: 'layer-api',
      comment: 'api floor (src/api/) imports api, the floors below it and gen/: not server or cli',
      severity: 'error',
      from: { path: API },
      to: { path: [SERVER, CLI].join('|') },
    },
    {
      name: 'layer-server',
      comment: 'server floor (src/server/) imports server, the floors below it and gen/: not cli',
      severity: 'error',
      from: { path: SERVER },
      to: { path: CLI },
    },
    {
      name: 'layer-unknown',
      comment: 'this file of src/ is on no floor: add its folder to a floor in DESIGN.md and .dependency-cruiser.cjs',
      severity: 'error',
      from: { path: '^src/', pathNot: KNOWN },
      to: {},
    },
    {
      name: 'src-not-to-outside',
      comment: 'src/ imports only src/, gen/ and packages: not test/, bench/, scripts/ or web/',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench|scripts|web)/' },
    },
    {
      name: 'no-circular',
      comment: 'import cycle in src/: no floor may reach itself again through its imports (DESIGN.md: no cycles anywhere in src/)',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    // Cruise from src/; gen/ and the folders outside src/ are included (so a rule can name them) but not followed.
    includeOnly: '^(src|gen|test|bench|scripts|web)/',
    doNotFollow: { path: ['node_modules', GEN, '^(test|bench|scripts|web)/'] },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.json'],
    },
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
};
