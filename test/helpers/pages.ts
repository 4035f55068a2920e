import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/**
 * Builds the hosted pages (`node scripts/build-pages.mjs`, what `npm run build:pages` runs) so a test
 * server serves the current web/ sources. Safe next to other builds and running servers.
 */
export async function buildPages(): Promise<void> {
  await promisify(execFile)(process.execPath, ['scripts/build-pages.mjs'], { timeout: 60_000 });
}
