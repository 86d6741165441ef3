import { PriorityClass } from "../../gen/infermesh/common/v1/common.js";

/** The priority classes, most urgent first (admission orders by them, engines may too); the names double as metrics labels. */
export const classNames = ["interactive", "standard", "batch"] as const;

export type ClassName = (typeof classNames)[number];

const byEnum: Partial<Record<PriorityClass, ClassName>> = {
  [PriorityClass.PRIORITY_CLASS_INTERACTIVE]: "interactive",
  [PriorityClass.PRIORITY_CLASS_STANDARD]: "standard",
  [PriorityClass.PRIORITY_CLASS_BATCH]: "batch",
};

/** The class of a request's PriorityClass; undefined for UNSPECIFIED or an unknown value. */
export const classOf = (priorityClass: PriorityClass): ClassName | undefined => byEnum[priorityClass];

const toEnum: Record<ClassName, PriorityClass> = {
  interactive: PriorityClass.PRIORITY_CLASS_INTERACTIVE,
  standard: PriorityClass.PRIORITY_CLASS_STANDARD,
  batch: PriorityClass.PRIORITY_CLASS_BATCH,
};

export const priorityClassOf = (name: ClassName): PriorityClass => toEnum[name];

/** 0 for the most urgent class. */
export const urgencyOf = (name: ClassName): number => classNames.indexOf(name);

/** A value per class. */
export type PerClass<T> = Record<ClassName, T>;

export const perClass = <T>(make: (name: ClassName) => T): PerClass<T> =>
  Object.fromEntries(classNames.map((name) => [name, make(name)])) as PerClass<T>;
