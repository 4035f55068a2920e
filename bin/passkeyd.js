#!/usr/bin/env node
// Runs the CLI from a checkout: the compiled build when present (the image), the TypeScript sources otherwise.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const built = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
if (process.env.PASSKEYD_FROM_SOURCE !== '1' && existsSync(built) && process.env.NODE_ENV === 'production') {
  await import(pathToFileURL(built).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
