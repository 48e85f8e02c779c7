// CPU time of process groups, from /proc: what a load cost each part of the
// local stack (a Worker's wrangler and workerd processes, the bench's own
// process with the local edge in it), not only the Worker's isolate.
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';

const TICK_MS = 1000 / 100; // USER_HZ on Linux

/** CPU ms used so far by every live process of each process group, by label. */
export function cpuOfGroups(groups) {
  const totals = Object.fromEntries(Object.keys(groups).map((label) => [label, 0]));
  const labelOf = new Map(Object.entries(groups).map(([label, pgid]) => [pgid, label]));
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let stat;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // The fields after the command (which may hold spaces) in parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const label = labelOf.get(Number(fields[2]));
    if (label) totals[label] += (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  }
  return totals;
}

/** This process's CPU ms so far (user + system). */
export function ownCpuMs() {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

export const cores = os.cpus().length;
