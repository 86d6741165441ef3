import { z } from "zod";
import type { Logger } from "./logger.js";

/** The level a service writes its decision events at; "off" writes none. */
export type EventLogLevel = "info" | "debug" | "off";

/**
 * The setting every service shares: the level of the typed events it writes where it
 * decides something about a request (admission queued, granted or rejected and why;
 * the router's pick; the response cache; memory-guard's evictions). "debug" keeps them
 * out of an info-level log until an operator asks for them.
 */
export const eventLogSetting = (level: EventLogLevel = "debug") => z.enum(["info", "debug", "off"]).default(level);

/** Writes one typed event: a JSON line whose `event` names it, with the request's ids; never its prompt. */
export type DecisionEvents = (event: string, fields: Readonly<Record<string, unknown>>) => void;

export const noDecisionEvents: DecisionEvents = () => undefined;

export function decisionEvents(logger: Logger, level: EventLogLevel): DecisionEvents {
  if (level === "off") return noDecisionEvents;
  return (event, fields) => logger[level]({ event, ...fields }, event);
}
