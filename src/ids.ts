import { monotonicFactory } from 'ulid';

const next = monotonicFactory();

/** A new opaque id that sorts by creation time (a ULID). */
export function newId(): string {
  return next().toLowerCase();
}
