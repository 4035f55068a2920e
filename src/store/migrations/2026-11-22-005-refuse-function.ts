import { sql, type Kysely } from 'kysely';

/**
 * `passkeyd_refuse(reason)`: raises an error (SQLSTATE PK001, the reason as its message). A command
 * done in ONE statement (no BEGIN/COMMIT round trips) calls it from its final SELECT when a step found
 * nothing, which aborts the statement and so undoes every change its CTEs made. `everyStepFound()` and
 * `runStatement()` in src/store/transaction.ts write that check and turn the reason into an error.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create or replace function passkeyd_refuse(reason text) returns boolean language plpgsql volatile as $fn$
    begin
      raise exception using errcode = 'PK001', message = reason;
    end
  $fn$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists passkeyd_refuse(text)`.execute(db);
}
