import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { startCommand, startFlags } from '../bench/start-flags.js';

// How the server is started: `npm start` (package.json) and the image's CMD (Dockerfile) must give Node
// the same flags; the bench reads them from package.json.
const startArgs = startCommand();
const flags = startFlags();

describe('the start command', () => {
  it('is the same in package.json and in the Dockerfile', () => {
    expect(startArgs).toEqual(['node', ...flags, 'bin/passkeyd.js', 'serve']);
    const cmd = /^CMD (\[.*\])$/m.exec(readFileSync('Dockerfile', 'utf8'));
    expect(cmd, 'the Dockerfile has a CMD in exec form').not.toBeNull();
    expect(JSON.parse(cmd![1]!)).toEqual(startArgs);
  });

  it("gives V8 a young generation larger than its default: this Node takes the flag and the new space grows past the default's 32 MiB", () => {
    expect(flags).toContain('--max-semi-space-size=64');
    // Allocate short-lived objects until the young generation has had every chance to grow, then report its size.
    const script = `
      const v8 = require('node:v8');
      let keep = [];
      for (let i = 0; i < 1e6; i++) { keep.push({ i, s: 'x' + i }); if (keep.length > 200000) keep = []; }
      process.stdout.write(String(v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size));`;
    const newSpace = (args: string[]) => Number(execFileSync(process.execPath, [...args, '-e', script]).toString());
    const MiB = 1024 * 1024;
    expect(newSpace([])).toBeLessThanOrEqual(32 * MiB);
    expect(newSpace(flags)).toBeGreaterThan(32 * MiB);
  }, 60_000);
});
