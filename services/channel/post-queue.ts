/**
 * Group commit per room on one instance. A room's posts serialize on its
 * sequence row lock, held until the commit's WAL flush; taken one at a time,
 * a busy room could not post faster than one message per commit latency.
 * Posts that arrive while a room's transaction is in flight wait and go
 * together in the next one (at most maxBatch), sharing one lock, one commit.
 *
 *   const queue = new PostQueue(store, clock, 100);
 *   const { message, duplicate } = await queue.post(newMessage);
 */
import type { Clock } from "../common/clock.js";
import type { ChannelStore, NewMessage } from "./store.js";
import type { ChatMessage } from "./types.js";

type Result = { message: ChatMessage; duplicate: boolean };
interface Waiting { m: NewMessage; resolve: (r: Result) => void; reject: (err: unknown) => void }

export class PostQueue {
  private readonly rooms = new Map<string, Waiting[]>();

  constructor(private readonly store: ChannelStore, private readonly clock: Clock, private readonly maxBatch = 100) {}

  post(m: NewMessage): Promise<Result> {
    return new Promise<Result>((resolve, reject) => {
      const waiting = this.rooms.get(m.roomId);
      if (waiting) return void waiting.push({ m, resolve, reject });
      this.rooms.set(m.roomId, [{ m, resolve, reject }]);
      void this.drain(m.roomId);
    });
  }

  private async drain(roomId: string): Promise<void> {
    for (;;) {
      const waiting = this.rooms.get(roomId)!;
      if (!waiting.length) {
        this.rooms.delete(roomId);
        return;
      }
      const batch = waiting.splice(0, this.maxBatch);
      if (batch.length === 1) {
        await this.store.post(batch[0]!.m, this.clock.now()).then(batch[0]!.resolve, batch[0]!.reject);
        continue;
      }
      try {
        const results = await this.store.postBatch(roomId, batch.map((w) => w.m), this.clock.now());
        batch.forEach((w, i) => w.resolve(results[i]!));
      } catch {
        // One bad post (e.g. a file attached twice) must not fail the others: one by one.
        for (const w of batch) await this.store.post(w.m, this.clock.now()).then(w.resolve, w.reject);
      }
    }
  }
}
