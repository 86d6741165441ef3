import type { FleetMember } from "./fleet.js";

/** Requests running, waiting and picked but not yet reported. */
export function requestsOf(member: FleetMember): number {
  const { load } = member;
  return load.runningRequests + load.waitingRequests + member.inFlightPicks;
}

/** Outstanding requests per sequence the worker runs at once. */
export function outstandingOf(member: FleetMember): number {
  return requestsOf(member) / Math.max(1, member.registration.maxSequences);
}
