import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { Rollout } from "../../../gen/infermesh/router/v1/router_service.js";

/** Whether this replica drives the rollouts: it holds the lease, another does, or nobody can tell (Redis is down). */
export type DriverRole = "driver" | "follower" | "unreachable";

/** Where rollouts are kept, and who drives them. */
export interface RolloutStore {
  /** Every stored rollout. */
  load(): Promise<Rollout[]>;
  /** Saves a rollout an operator started: it becomes its model's rollout, whatever was there. */
  replace(rollout: Rollout): Promise<void>;
  /**
   * Saves the driver's change to a rollout, only if its model's stored rollout is still
   * this one (the same id); false when an operator replaced or removed it meanwhile.
   */
  update(rollout: Rollout): Promise<boolean>;
  /** Forgets a model's rollout. */
  remove(model: string): Promise<void>;
  /** Takes or renews the driver's lease. */
  holdDriver(): Promise<DriverRole>;
  /** `listener` is called when another replica changed a rollout. */
  onChange(listener: () => void): void;
  close(): Promise<void>;
}

/**
 * One router's rollouts, in memory and, with a file, on disk (written whole, atomically,
 * on every change), so that a restarted router without Redis resumes them. It always
 * drives: without Redis, router replicas each drive their own copy; they see the same
 * workers' outcomes and so make the same decisions.
 */
export class LocalRolloutStore implements RolloutStore {
  private readonly rollouts = new Map<string, Rollout>();

  constructor(private readonly file: string | undefined) {
    if (!file) return;
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      return; // No file yet: no rollouts.
    }
    const stored = JSON.parse(text) as { rollouts?: unknown[] };
    for (const json of stored.rollouts ?? []) {
      const rollout = Rollout.fromJSON(json);
      if (rollout.spec) this.rollouts.set(rollout.spec.model, rollout);
    }
  }

  async load(): Promise<Rollout[]> {
    return [...this.rollouts.values()];
  }

  async replace(rollout: Rollout): Promise<void> {
    this.rollouts.set(rollout.spec!.model, rollout);
    this.write();
  }

  async update(rollout: Rollout): Promise<boolean> {
    if (this.rollouts.get(rollout.spec!.model)?.id !== rollout.id) return false;
    await this.replace(rollout);
    return true;
  }

  async remove(model: string): Promise<void> {
    this.rollouts.delete(model);
    this.write();
  }

  async holdDriver(): Promise<DriverRole> {
    return "driver";
  }

  onChange(): void {}

  async close(): Promise<void> {}

  private write(): void {
    if (!this.file) return;
    mkdirSync(dirname(this.file), { recursive: true });
    const temporary = `${this.file}.${process.pid}.tmp`;
    writeFileSync(temporary, `${JSON.stringify({ rollouts: [...this.rollouts.values()].map((rollout) => Rollout.toJSON(rollout)) })}\n`);
    renameSync(temporary, this.file);
  }
}
