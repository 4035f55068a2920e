import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EVENT_TYPES } from '../src/domain/events.js';

/** The event types the README's audit-trail table lists (its first column). */
function readmeEventTypes(): string[] {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const start = readme.indexOf('**The audit trail**');
  expect(start, 'the README has an audit-trail section').toBeGreaterThan(0);
  const section = readme.slice(start, readme.indexOf('\n\n**', start + 1));
  return [...section.matchAll(/^\| `([a-z.]+)` \|/gm)].map((m) => m[1]!);
}

describe('the event catalogue', () => {
  it('is what the README lists as the audit trail, type for type', () => {
    const listed = readmeEventTypes();
    expect(listed.length).toBeGreaterThan(0);
    expect(new Set(listed).size, 'no type listed twice').toBe(listed.length);
    expect([...listed].sort()).toEqual([...EVENT_TYPES].sort());
  });
});
