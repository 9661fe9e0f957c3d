/**
 * Draining, so the operator can scale a pool in without dropping anyone: a
 * `drain` command on the instance's control subject makes it report itself
 * unhealthy (lookups stop assigning it at once), refuse new sessions, and end
 * its sessions with UNAVAILABLE. The SDK asks lookup again, avoiding this
 * instance, and resumes from its last sequence per room elsewhere: nothing is
 * missed. The next load report shows 0 sessions; only then does the operator
 * remove the instance. `resume` undoes a drain the operator no longer wants.
 * Core NATS and idempotent: the operator repeats a command until the load
 * reports show its effect.
 *
 *   parley.chat.control.<instanceId>   {"action":"drain"} | {"action":"resume"}
 */
import type { Bus, Subscription } from "../common/bus/types.js";
import { UnavailableError } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import type { ChatSession } from "./session.js";
import { controlSubject } from "./subjects.js";

export type ControlAction = "drain" | "resume";

export const DRAINING_MESSAGE = "channel instance draining; ask lookup for another";

export class DrainControl {
  private sub: Subscription | undefined;
  private state = false;

  constructor(
    private readonly deps: { bus: Bus; log: Logger; instanceId: string; sessions: Set<ChatSession> },
    /** Publishes a load report at once, so lookups and the operator learn the new state within a round trip. */
    private readonly reportNow: () => Promise<void>,
  ) {}

  get draining(): boolean {
    return this.state;
  }

  start(): void {
    this.sub = this.deps.bus.subscribe(controlSubject(this.deps.instanceId), (m) => {
      let action: unknown;
      try {
        action = (JSON.parse(new TextDecoder().decode(m.data)) as { action?: unknown }).action;
      } catch {
        action = undefined;
      }
      if (action !== "drain" && action !== "resume") {
        this.deps.log.warn({ subject: m.subject }, "ignoring a control message that is not {\"action\":\"drain\"|\"resume\"}");
        return;
      }
      void this.apply(action).catch((err: unknown) => this.deps.log.warn({ err, action }, "control command failed"));
    });
  }

  stop(): void {
    this.sub?.unsubscribe();
  }

  async apply(action: ControlAction): Promise<void> {
    const drain = action === "drain";
    if (drain !== this.state) this.deps.log.info({ instanceId: this.deps.instanceId, action }, drain ? "draining: ending sessions, taking no new ones" : "drain lifted: taking sessions again");
    this.state = drain;
    if (drain) {
      // Unhealthy first, so the reconnecting clients are not handed this instance again.
      await this.reportNow();
      for (const s of this.deps.sessions) s.end(new UnavailableError(DRAINING_MESSAGE));
      // Ended sessions leave the set as their calls finish; report once they have (bounded).
      for (let i = 0; i < 40 && this.deps.sessions.size > 0; i++) await new Promise((r) => setTimeout(r, 50));
    }
    await this.reportNow();
  }

  /** Wraps the Session handler: a draining instance refuses new sessions (the client asks lookup again). */
  guard<A extends unknown[]>(session: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
    return async (...args: A) => {
      if (this.state) throw new UnavailableError(DRAINING_MESSAGE);
      return session(...args);
    };
  }
}
