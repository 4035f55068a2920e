/** Splits argv into positional words and `--name value` / `--name=value` / `--flag` options. */
export function parseArgs(argv: string[]): { words: string[]; flags: Record<string, string> } {
  const words: string[] = [];
  const flags: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) {
      words.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    if (eq > 0) {
      flags[a.slice(2, eq)] = a.slice(eq + 1);
    } else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) {
      flags[a.slice(2)] = argv[++i]!;
    } else {
      flags[a.slice(2)] = 'true';
    }
  }
  return { words, flags };
}

/** Removes and returns the named flags, so the rest can go to the configuration. */
export function takeFlags(flags: Record<string, string>, names: string[]): Record<string, string | undefined> {
  const taken: Record<string, string | undefined> = {};
  for (const n of names) {
    taken[n] = flags[n];
    delete flags[n];
  }
  return taken;
}
