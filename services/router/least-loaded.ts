import type { FleetMember } from "./fleet.js";

/** A ranked candidate with its score in [0,1]; higher is better. */
export interface RankedMember {
  readonly member: FleetMember;
  readonly score: number;
}

/**
 * Ranks members by load: requests running, waiting and picked-but-unreported, relative
 * to the sequences the worker decodes at once. Equal scores are ordered randomly so
 * ties do not always land on the same worker.
 */
export function rankByLoad(members: readonly FleetMember[], random: () => number = Math.random): RankedMember[] {
  return members
    .map((member) => {
      const outstanding = member.load.runningRequests + member.load.waitingRequests + member.inFlightPicks;
      const capacity = Math.max(1, member.registration.maxSequences);
      return { member, score: 1 / (1 + outstanding / capacity), tieBreak: random() };
    })
    .sort((a, b) => b.score - a.score || a.tieBreak - b.tieBreak)
    .map(({ member, score }) => ({ member, score }));
}
