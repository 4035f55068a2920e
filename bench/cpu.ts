import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100;

/** Every process's parent and CPU seconds (its own and its reaped children's), from Linux /proc. */
function processes(): { parents: Map<number, number>; cpu: Map<number, number> } {
  const parents = new Map<number, number>();
  const cpu = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the command name (which may contain spaces) start after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(entry), Number(fields[1]));
      cpu.set(Number(entry), (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / TICKS_PER_SECOND);
    } catch {
      /* the process ended meanwhile */
    }
  }
  return { parents, cpu };
}

function inTree(parents: Map<number, number>, rootPid: number, pid: number): boolean {
  for (let p: number | undefined = pid; p && p > 1; p = parents.get(p)) if (p === rootPid) return true;
  return false;
}

/**
 * CPU seconds (user + system) used so far by a process and all its descendants (Linux /proc), including
 * descendants that have ended (their time is in their parent's cutime/cstime once reaped): PostgreSQL's
 * backends come and go with pool connections, and without them a phase could come out negative.
 */
export function treeCpuSeconds(rootPid: number): number {
  const { parents, cpu } = processes();
  let total = 0;
  for (const [pid, seconds] of cpu) if (inTree(parents, rootPid, pid)) total += seconds;
  return total;
}

/** A process and its descendants running now. */
export function treePids(rootPid: number): number[] {
  const { parents } = processes();
  return [...parents.keys()].filter((pid) => inTree(parents, rootPid, pid));
}
