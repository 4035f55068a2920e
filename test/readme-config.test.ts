import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { settings } from '../src/config/config.js';

describe('README configuration table', () => {
  const readme = readFileSync('README.md', 'utf8');
  const rows = readme.split('\n').filter((l) => /^\| (PASSKEYD_|DATABASE_URL)/.test(l));

  it('has one row per setting, with its variable and flag, and nothing else', () => {
    expect(rows.map((r) => r.split('|')[1]!.trim()).sort()).toEqual(settings.map((s) => s.env).sort());
    for (const s of settings) {
      const row = rows.find((r) => r.startsWith(`| ${s.env} |`))!;
      expect(row, s.env).toContain(`| --${s.flag} |`);
    }
  });
});
