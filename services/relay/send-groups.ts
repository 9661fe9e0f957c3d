/**
 * Group commit for sends. Every send locks the rows of the queues it adds to
 * until it commits, so concurrent sends to the same queues take turns; under
 * load, requests that arrive while earlier ones are committing are joined
 * into one transaction: one commit and one lock hold for the whole group.
 * Alone, a request runs at once, so light load pays no extra latency.
 * After each commit, `committed` hears of every request of the group at
 * once (the relay publishes one wake-up per queue for the whole group).
 */
import type { Clock } from "../common/clock.js";
import type { RelayStore } from "./store.js";
import type { Limits, OutgoingMessage, SendOutcome, Sender } from "./types.js";

/** A committed request. */
export interface Sent {
  sender: Sender;
  messages: OutgoingMessage[];
  outcomes: SendOutcome[];
}

interface Pending {
  sender: Sender;
  messages: OutgoingMessage[];
  resolve: (outcomes: SendOutcome[]) => void;
  reject: (err: unknown) => void;
}

export class SendGroups {
  private readonly waiting: Pending[] = [];
  private running = 0;

  constructor(
    private readonly store: RelayStore,
    private readonly limits: Limits,
    private readonly clock: Clock,
    /**
     * Groups in flight at once. One: a group is one statement (fast-path.ts),
     * and a second group of the same process mostly waits on the same queue
     * row locks; requests that arrive meanwhile make the next group bigger
     * instead, one call, one commit and one lock hold for all of them.
     * Measured in bench/relay (60k messages): 8,412 and 8,510 msgs/s with one,
     * 7,863 and 7,652 with two, and less Postgres CPU.
     */
    private readonly concurrency = 1,
    /** Most messages in one group. */
    private readonly maxGroupMessages = 4096,
    /** False: every request is its own transaction, as soon as it arrives. */
    private readonly grouping = true,
    /** Called once per commit, before the requests resolve; what it throws does not fail them (they are committed). */
    private readonly committed: (sent: Sent[]) => void = () => undefined,
  ) {}

  /** True when requests commit in the order submitted (with grouping: one group at a time, in order). */
  get commitsInOrder(): boolean {
    return this.grouping && this.concurrency === 1;
  }

  /** Resolves once the request is committed (or rejects with its own error). */
  async submit(sender: Sender, messages: OutgoingMessage[]): Promise<SendOutcome[]> {
    if (!this.grouping) {
      const outcomes = await this.store.send(sender, messages, this.limits, this.clock.now());
      this.tell([{ sender, messages, outcomes }]);
      return outcomes;
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({ sender, messages, resolve, reject });
      this.drain();
    });
  }

  private tell(sent: Sent[]): void {
    try {
      this.committed(sent);
    } catch {
      // Wake-ups are the only listener: a stream that misses one catches up
      // at the next wake-up of its queue or when it reconnects.
    }
  }

  private drain(): void {
    while (this.running < this.concurrency && this.waiting.length) {
      const group: Pending[] = [];
      let size = 0;
      while (this.waiting.length && (group.length === 0 || size + this.waiting[0]!.messages.length <= this.maxGroupMessages)) {
        const next = this.waiting.shift()!;
        size += next.messages.length;
        group.push(next);
      }
      this.running++;
      this.store
        .sendMany(group, this.limits, this.clock.now())
        .then((results) => {
          const sent = group.flatMap((p, i) => {
            const r = results[i]!;
            return r instanceof Error ? [] : [{ sender: p.sender, messages: p.messages, outcomes: r }];
          });
          if (sent.length) this.tell(sent);
          results.forEach((r, i) => (r instanceof Error ? group[i]!.reject(r) : group[i]!.resolve(r)));
        })
        .catch((err: unknown) => group.forEach((p) => p.reject(err)))
        .finally(() => {
          this.running--;
          this.drain();
        });
    }
  }
}
