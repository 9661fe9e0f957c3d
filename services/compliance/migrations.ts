import type { Migration } from "../common/db.js";

/**
 * The staging database of the compliance service (its own database, apart
 * from the chat database).
 *
 * A staged event belongs to no batch until an export claims it
 * (`batch_id`), in the transaction that records the batch as `writing`. The
 * batch's files are then written; only once they are durable does a second
 * transaction delete the batch's events, remember their ids in `exported_ids`
 * (so a late redelivery of one is not archived twice) and mark the batch
 * `done`. A batch found `writing` at start-up is written again, whole, under
 * the same id: the same events give the same files.
 *
 * `participants` and `rooms` carry each conversation's state from one batch
 * to the next (who is present at the start, the room's latest settings).
 */
export const complianceMigrations: Migration[] = [
  {
    version: 1,
    name: "staged events, batches, conversation state",
    sql: `
      CREATE TABLE staged_events (
        id text PRIMARY KEY,
        staged_seq bigserial NOT NULL,
        room_id text NOT NULL,
        kind text NOT NULL,
        at_ms bigint NOT NULL,
        stream_seq bigint NOT NULL,
        record jsonb NOT NULL,
        batch_id text
      );
      CREATE INDEX staged_events_unclaimed ON staged_events (at_ms) WHERE batch_id IS NULL;
      CREATE INDEX staged_events_batch ON staged_events (batch_id, room_id) WHERE batch_id IS NOT NULL;

      CREATE TABLE exported_ids (
        id text PRIMARY KEY,
        exported_at_ms bigint NOT NULL
      );
      CREATE INDEX exported_ids_age ON exported_ids (exported_at_ms);

      -- state: writing | done
      CREATE TABLE batches (
        id text PRIMARY KEY,
        state text NOT NULL,
        started_at_ms bigint NOT NULL,
        finished_at_ms bigint,
        conversations int NOT NULL DEFAULT 0,
        records int NOT NULL DEFAULT 0,
        files int NOT NULL DEFAULT 0,
        bytes bigint NOT NULL DEFAULT 0
      );

      CREATE TABLE participants (
        room_id text NOT NULL,
        user_id text NOT NULL,
        role smallint NOT NULL,
        PRIMARY KEY (room_id, user_id)
      );

      CREATE TABLE rooms (
        room_id text PRIMARY KEY,
        room jsonb NOT NULL
      );
    `,
  },
];
