/**
 * How ComplianceSinks and ChatPools find each other, for both controllers.
 * Level-triggered: nothing is written on the other object; each reconcile
 * lists the sinks of the namespace and derives the same answer.
 *
 * A pool's uploads are linked into one archive folder and the sink that
 * exports them removes them, so one sink archives a pool's attachments: the
 * oldest sink naming it (creation time, then name). A younger sink naming the
 * same pool is refused with a message saying which sink has it.
 */
import { chatPoolSpecWithDefaults } from "../api/defaults.js";
import type { ChatPool, ComplianceSink } from "../api/types.js";
import { filesClaimName } from "../specs/chat.js";
import type { SinkInputs } from "../specs/compliance.js";

type SinkMeta = Pick<ComplianceSink, "metadata" | "spec">;

const age = (a: SinkMeta, b: SinkMeta) =>
  (Date.parse(a.metadata.creationTimestamp ?? "") || 0) - (Date.parse(b.metadata.creationTimestamp ?? "") || 0) || a.metadata.name.localeCompare(b.metadata.name);

/** The sink (name) that archives `pool`'s attachments, or undefined when none names it. */
export function archivingSink(pool: string, sinks: SinkMeta[]): string | undefined {
  return sinks.filter((s) => s.spec.chatPools?.includes(pool)).sort(age)[0]?.metadata.name;
}

/**
 * What the sink's Deployment needs from its pools. Throws a message a user can
 * act on when a pool is missing, the pools disagree, or another sink has one.
 */
export function resolveSinkInputs(sink: ComplianceSink, pools: Map<string, ChatPool | undefined>, sinks: SinkMeta[]): SinkInputs {
  const missing = sink.spec.chatPools.filter((p) => !pools.get(p));
  if (missing.length) throw new Error(`ChatPool ${missing.join(", ")} does not exist in namespace ${sink.metadata.namespace}`);
  const found = sink.spec.chatPools.map((p) => pools.get(p)!);
  const taken = found.map((p) => [p.metadata.name, archivingSink(p.metadata.name, sinks)] as const).filter(([, s]) => s !== undefined && s !== sink.metadata.name);
  if (taken.length) {
    throw new Error(`${taken.map(([p, s]) => `ChatPool ${p} is already archived by ComplianceSink ${s}`).join("; ")}: one sink per pool (its attachments are handed over once)`);
  }
  const claims = [...new Set(found.map((p) => filesClaimName(p)))];
  if (claims.length > 1) {
    throw new Error(`the ChatPools keep their files on different claims (${claims.join(", ")}); one sink reads one archive: use a sink per pool, or give the pools one files.storage.existingClaim`);
  }
  const urls = [...new Set(found.map((p) => chatPoolSpecWithDefaults(p.spec).nats.url))];
  const natsUrl = sink.spec.nats?.url ?? urls[0]!;
  if (!sink.spec.nats?.url && urls.length > 1) throw new Error(`the ChatPools use different NATS (${urls.join(", ")}); set spec.nats.url to the one their events are on`);
  return { natsUrl, archiveClaim: claims[0] };
}

/**
 * Which sink changes a pool must hear about: its files get or lose the
 * archive folder when a sink naming it appears, changes its pools, starts
 * or ends deleting. Status-only updates (every status poll) are not news.
 */
export class SinkPoolLinks {
  private readonly seen = new Map<string, string>();

  /** True when the namespace's pools should be reconciled for this event. */
  changed(type: "add" | "update" | "delete", sink: SinkMeta): boolean {
    const key = `${sink.metadata.namespace}/${sink.metadata.name}`;
    if (type === "delete") return this.seen.delete(key) || true;
    const now = JSON.stringify([sink.spec.chatPools ?? [], Boolean(sink.metadata.deletionTimestamp)]);
    if (this.seen.get(key) === now) return false;
    this.seen.set(key, now);
    return true;
  }
}
