import { createRequire } from 'node:module';
import pg from 'pg';

/**
 * A query on a statement this connection prepared before, without asking PostgreSQL to describe its
 * answer again. pg sends Bind, Describe, Execute and Sync on every run of a named statement, and
 * parses the RowDescription that comes back (a field object per column, a type parser looked up per
 * column) before the first row: `_handleRowDescription` alone was 2% of the service's on-CPU samples
 * in the login bench. A prepared statement's answer has the same columns on every run, so the first
 * run keeps what pg made of the description, per connection and statement, and later runs send Bind,
 * Execute and Sync and parse their rows with it. Should the statement's result type change (another
 * instance migrated a table), PostgreSQL refuses the run ("cached plan must not change result type")
 * instead of sending rows of another shape, and the caller stops using the statement (db.ts).
 */

/** What pg's Result keeps of a RowDescription: the fields, their parsers, the empty row it copies for each row. */
export interface AnswerShape {
  fields: unknown[];
  parsers: unknown[];
  emptyRow: object;
}

/** The parts of pg's Query and Result this relies on (not in pg's type declarations). */
interface QueryInternals {
  name: string;
  values: unknown[];
  /** Answer in binary (a client option passkeyd does not set); the description kept was made for the same. */
  binary: boolean | undefined;
  _result: { fields: unknown[]; _parsers: unknown[]; _prebuiltEmptyResultObject: object };
  _accumulateRows: boolean;
  hasBeenParsed(connection: Connection): boolean;
  handleError(err: Error, connection: Connection): void;
}

interface Connection {
  bind(config: { portal: string; statement: string; values: unknown[]; binary: boolean; valueMapper: (v: unknown) => unknown }): void;
  execute(config: { portal: string }): void;
  sync(): void;
}

/** pg's own mapping of a JavaScript value to a parameter's text (arrays, objects, buffers). */
const { prepareValue } = createRequire(import.meta.url)('pg/lib/utils.js') as { prepareValue: (v: unknown) => unknown };

/** Years 1 to 9999 (0001-01-01 and 10000-01-01 UTC), which an ISO string writes as PostgreSQL reads them. */
const ISO_FROM = Date.parse('0001-01-01T00:00:00Z');
const ISO_TO = Date.parse('9999-12-31T23:59:59.999Z') + 1;

/**
 * A timestamp as ISO 8601 in UTC (the columns are all timestamptz): one native call, where pg writes
 * the local time field by field. Dates it cannot write that way go to pg as before.
 */
function parameterOf(v: unknown): unknown {
  if (v instanceof Date) {
    const t = v.getTime();
    return t >= ISO_FROM && t < ISO_TO ? v.toISOString() : prepareValue(v);
  }
  return prepareValue(v);
}

const Query = pg.Query as unknown as new (
  config: pg.QueryConfig,
) => pg.Query & QueryInternals & { prepare(connection: Connection): void; handleRowDescription(msg: unknown): void };

/**
 * A run of the named statement `name` on one connection; `shapes` is that connection's (see the module's
 * comment). Submitted with a callback (`client.query(query, callback)`), which gets the result.
 */
export class PreparedQuery extends Query {
  constructor(
    name: string,
    text: string,
    values: unknown[],
    private readonly shapes: Map<string, AnswerShape>,
  ) {
    super({ name, text, values });
  }

  override prepare(connection: Connection): void {
    const shape = this.shapes.get(this.name);
    if (shape === undefined || !this.hasBeenParsed(connection)) {
      super.prepare(connection);
      return;
    }
    try {
      connection.bind({ portal: '', statement: this.name, values: this.values, binary: this.binary === true, valueMapper: parameterOf });
    } catch (err) {
      // A value that cannot be written fails this query alone: nothing was sent but the Sync, whose
      // answer frees the connection. (pg also closes the statement there; this one stays prepared.)
      connection.sync();
      this.handleError(err as Error, connection);
      return;
    }
    const result = this._result;
    result.fields = shape.fields;
    result._parsers = shape.parsers;
    result._prebuiltEmptyResultObject = shape.emptyRow;
    this._accumulateRows = true;
    connection.execute({ portal: '' });
    connection.sync();
  }

  override handleRowDescription(msg: unknown): void {
    super.handleRowDescription(msg);
    const r = this._result;
    this.shapes.set(this.name, { fields: r.fields, parsers: r._parsers, emptyRow: r._prebuiltEmptyResultObject });
  }
}
