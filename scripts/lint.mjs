#!/usr/bin/env node
// npm run lint: runs every check, even after one fails, so one run shows everything to fix, then exits 1
// if any failed. The checks are the npm scripts below; each also runs alone (npm run lint:layers, ...).
import { spawnSync } from 'node:child_process';

const CHECKS = [
  ['lint:code', 'Biome (lint and formatting)'],
  ['lint:layers', 'layers and import cycles (dependency-cruiser)'],
  ['lint:unused', 'unused files, exports and dependencies (knip)'],
  ['lint:size', 'no source file over 400 lines'],
];

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const failed = [];
for (const [script, what] of CHECKS) {
  console.log(`\n-- ${what}: npm run ${script}`);
  const r = spawnSync(npm, ['run', '--silent', script], { stdio: 'inherit', shell: process.platform === 'win32' });
  if (r.status !== 0) failed.push(script);
}
console.log(failed.length ? `\nlint: failed: ${failed.join(', ')}` : '\nlint: all checks passed');
process.exit(failed.length ? 1 : 0);
