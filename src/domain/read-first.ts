/**
 * The refusal of a fast path: a call that skipped its read (its write checks everything that can change)
 * found something in the way. The caller then reads, decides and words the answer the slow way, so a
 * fast path refuses with this one error whatever the reason, and {@link orReadFirst} turns it into
 * undefined. Used by SetSession's login (login-finish.ts) and VerifyPasskeyRegistration (registration-finish.ts).
 */
export class ReadFirst extends Error {}

export const readFirst = (): ReadFirst => new ReadFirst();

/** Runs a fast path: its result, or undefined when it refused with {@link ReadFirst}. */
export async function orReadFirst<T>(fast: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fast();
  } catch (err) {
    if (err instanceof ReadFirst) return undefined;
    throw err;
  }
}
