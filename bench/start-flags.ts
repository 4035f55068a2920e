import { readFileSync } from 'node:fs';

/** The `npm start` script (package.json): the one place that says how the server is started. */
export function startCommand(): string[] {
  return (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } }).scripts.start.split(/\s+/);
}

/** Node's flags in `npm start`, so the bench runs the server as it is started. */
export function startFlags(): string[] {
  return startCommand().filter((a) => a.startsWith('--'));
}
