import { Code } from '@connectrpc/connect';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { knownConnectError } from '../src/errors.js';
import { BACKEND, openTestStore } from './helpers/server.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

/** The error the database raises for a statement, as the store's callers see it. */
async function failureOf(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run();
  } catch (err) {
    return err;
  }
  throw new Error('the statement did not fail');
}

describe(`database errors in the error vocabulary (${BACKEND})`, () => {
  it('text the database cannot store is the client’s INVALID_ARGUMENT; other data errors stay unknown (INTERNAL)', async () => {
    const { store, cleanup } = await openTestStore();
    cleanups.push(async () => {
      await store.close();
      await cleanup();
    });
    const db = store.db;
    // U+0000 inside jsonb (22P05) and in text (22021): only a request can have put it there.
    const unstorable = [
      await failureOf(() => sql`select ${JSON.stringify({ transports: ['\u0000'] })}::jsonb as j`.execute(db)),
      await failureOf(() => sql`select ${'a\u0000b'}::text as t`.execute(db)),
    ];
    for (const err of unstorable) {
      const known = knownConnectError(err);
      expect([(err as { code?: string }).code, known?.code]).toEqual([(err as { code?: string }).code, Code.InvalidArgument]);
      expect(known?.rawMessage).toMatch(/cannot be stored/);
    }
    expect((unstorable as { code?: string }[]).map((e) => e.code).sort()).toEqual(['22021', '22P05']);
    // A division by zero is passkeyd's own bug, not the client's.
    expect(knownConnectError(await failureOf(() => sql`select 1 / ${0}::int as x`.execute(db)))).toBeUndefined();
  });
});
