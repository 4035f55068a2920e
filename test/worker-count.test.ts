import { afterEach, describe, expect, it, vi } from 'vitest';
import { workerCount } from '../src/server/cluster.js';

describe('how many workers `serve` runs', () => {
  afterEach(() => vi.unstubAllEnvs());

  it('PGlite runs one process, whatever is asked', () => {
    expect(workerCount(0, undefined, 8)).toBe(1);
    expect(workerCount(4, undefined, 8)).toBe(1);
  });

  it('a number asked for is taken as it is', () => {
    expect(workerCount(3, 'postgres://db.internal:5432/app', 8)).toBe(3);
    expect(workerCount(3, 'postgres://postgres@127.0.0.1:5432/test', 8)).toBe(3);
  });

  it('0 is one per core for a PostgreSQL elsewhere, one fewer for one on this machine, never none', () => {
    vi.stubEnv('PGHOST', '');
    expect(workerCount(0, 'postgres://db.internal:5432/app', 8)).toBe(8);
    expect(workerCount(0, 'postgres://10.0.0.5/app', 2)).toBe(2);
    for (const local of [
      'postgres://postgres@127.0.0.1:5432/test',
      'postgresql://localhost/app',
      'postgres://LOCALHOST:5433/app',
      'postgres://[::1]:5432/app',
      'postgres:///app',
      'postgres://user@/app?host=/var/run/postgresql',
      'postgres://user@%2Fvar%2Frun%2Fpostgresql/app',
    ]) {
      expect(workerCount(0, local, 8), local).toBe(7);
      expect(workerCount(0, local, 2), local).toBe(1);
      expect(workerCount(0, local, 1), local).toBe(1);
    }
  });

  it('a URL without a host is where PGHOST points, as pg connects', () => {
    vi.stubEnv('PGHOST', 'db.internal');
    expect(workerCount(0, 'postgres:///app', 4)).toBe(4);
    vi.stubEnv('PGHOST', '/run/postgresql');
    expect(workerCount(0, 'postgres:///app', 4)).toBe(3);
  });
});
