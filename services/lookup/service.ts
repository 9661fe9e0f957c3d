/**
 * A lookup replica: listens to the channel instances' load reports and
 * answers Assign with the least-loaded live one. No state of its own beyond
 * what the reports rebuild, so replicas share nothing.
 *
 *   const lookup = LookupService.create({ dropAfterMs: 30_000, relayPublicKey }, { bus, clock, log });
 *   const grpc = await startGrpcServer({ port: 0, services: lookup.services });
 */
import type { Bus, Subscription } from "../common/bus/types.js";
import type { Clock } from "../common/clock.js";
import { UnavailableError } from "../common/errors.js";
import { bind, sessionAuthorizer, type BoundService, type CallContext } from "../common/grpc.js";
import type { ReadinessCheck } from "../common/http.js";
import type { Logger } from "../common/log.js";
import { Counter, metric } from "../common/metrics.js";
import { TokenVerifier } from "../common/tokens.js";
import { LoadReport, LookupService as LookupDefinition, type AssignRequest, type Assignment, type InstanceList } from "../../generated/parley/v1/lookup.js";
import { LOAD_SUBJECT } from "../channel/subjects.js";
import { InstanceTable } from "./table.js";

export interface LookupOptions {
  /** An instance that has not reported for this long is dropped. */
  dropAfterMs: number;
  relayPublicKey: Uint8Array;
}

const assignments = () =>
  metric("parley_lookup_assignments_total", () => new Counter({ name: "parley_lookup_assignments_total", help: "Sessions assigned, by channel instance", labelNames: ["instance"] }));

export class LookupService {
  readonly services: BoundService[];
  readonly table: InstanceTable;
  private readonly sub: Subscription;

  private constructor(options: LookupOptions, deps: { bus: Bus; clock: Clock; log: Logger }) {
    this.table = new InstanceTable(deps.clock, options.dropAfterMs);
    this.sub = deps.bus.subscribe(LOAD_SUBJECT, (m) => {
      try {
        this.table.apply(LoadReport.decode(m.data));
      } catch (err) {
        deps.log.warn({ err }, "ignoring a malformed load report");
      }
    });
    const handlers = {
      assign: async (req: AssignRequest, _ctx: CallContext): Promise<Assignment> => {
        const r = this.table.choose(req.exclude);
        if (!r) throw new UnavailableError("no live channel instance has reported its load; retry shortly");
        assignments().inc({ instance: r.instanceId });
        return { instanceId: r.instanceId, address: r.address };
      },
      listInstances: async (): Promise<InstanceList> => ({ instances: this.table.states() }),
    };
    this.services = [bind(LookupDefinition, "lookup", handlers, sessionAuthorizer(new TokenVerifier(options.relayPublicKey, deps.clock), []), deps.log)];
  }

  static create(options: LookupOptions, deps: { bus: Bus; clock: Clock; log: Logger }): LookupService {
    return new LookupService(options, deps);
  }

  readiness(): ReadinessCheck {
    return async () => (this.table.live().length ? undefined : "no live channel instance reported yet");
  }

  stop(): void {
    this.sub.unsubscribe();
  }
}
