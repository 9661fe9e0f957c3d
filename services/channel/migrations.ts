import type { Migration } from "../common/db.js";

/**
 * The chat database. Every post, edit and delete takes the room's next
 * sequence by bumping `rooms.last_seq` inside the transaction that stores it:
 * the row lock that bump takes makes a room's events commit in sequence
 * order, so an instance that has delivered seq N never later finds a
 * committed N-1 it skipped.
 *
 * A message row keeps its post sequence (`seq`) and the sequence of its
 * latest change (`event_seq`); a reconnecting client asks for
 * `event_seq > last seen` and gets each changed message once, in its
 * current state.
 */
export const chatMigrations: Migration[] = [
  {
    version: 1,
    name: "rooms, members, invitations, messages",
    sql: `
      -- type: 1 open, 2 invite-only
      CREATE TABLE rooms (
        id text PRIMARY KEY,
        type smallint NOT NULL,
        topic text NOT NULL DEFAULT '',
        description text NOT NULL DEFAULT '',
        archived boolean NOT NULL DEFAULT false,
        created_by text NOT NULL,
        created_at_ms bigint NOT NULL,
        last_seq bigint NOT NULL DEFAULT 0,
        member_count int NOT NULL DEFAULT 0,
        search tsvector GENERATED ALWAYS AS (to_tsvector('simple', id || ' ' || topic || ' ' || description)) STORED
      );
      CREATE INDEX rooms_search ON rooms USING gin (search);

      -- role: 1 member, 2 manager, 3 owner
      CREATE TABLE members (
        room_id text NOT NULL REFERENCES rooms (id),
        user_id text NOT NULL,
        role smallint NOT NULL,
        joined_at_ms bigint NOT NULL,
        last_read_seq bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (room_id, user_id)
      );
      CREATE INDEX members_user ON members (user_id);

      -- Kicked users may not rejoin an open room until invited again.
      CREATE TABLE bans (
        room_id text NOT NULL REFERENCES rooms (id),
        user_id text NOT NULL,
        by_user text NOT NULL,
        at_ms bigint NOT NULL,
        PRIMARY KEY (room_id, user_id)
      );

      CREATE TABLE invitations (
        room_id text NOT NULL REFERENCES rooms (id),
        user_id text NOT NULL,
        invited_by text NOT NULL,
        created_at_ms bigint NOT NULL,
        PRIMARY KEY (room_id, user_id)
      );
      CREATE INDEX invitations_user ON invitations (user_id);

      CREATE TABLE messages (
        room_id text NOT NULL REFERENCES rooms (id),
        seq bigint NOT NULL,
        event_seq bigint NOT NULL,
        message_id text NOT NULL,
        author text NOT NULL,
        client_message_id text NOT NULL,
        body text NOT NULL,
        reply_to bigint NOT NULL DEFAULT 0,
        mentions text[] NOT NULL DEFAULT '{}',
        attachments jsonb NOT NULL DEFAULT '[]',
        created_at_ms bigint NOT NULL,
        edited_at_ms bigint NOT NULL DEFAULT 0,
        deleted boolean NOT NULL DEFAULT false,
        search tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED,
        PRIMARY KEY (room_id, seq),
        UNIQUE (room_id, event_seq),
        UNIQUE (room_id, author, client_message_id)
      );
      CREATE INDEX messages_search ON messages USING gin (search);
      CREATE INDEX messages_mentions ON messages USING gin (mentions);

      -- Files attached to messages: download tokens are only issued for these.
      CREATE TABLE message_files (
        room_id text NOT NULL,
        file_id text NOT NULL,
        seq bigint NOT NULL,
        PRIMARY KEY (room_id, file_id)
      );
    `,
  },
  {
    version: 2,
    name: "compliance recording marker",
    sql: `
      -- event_seq of the message's last change whose compliance event JetStream
      -- confirmed; the sweep republishes rows where it lags (instance died
      -- between commit and confirmation, client never retried).
      ALTER TABLE messages ADD COLUMN recorded_seq bigint NOT NULL DEFAULT 0;
      UPDATE messages SET recorded_seq = event_seq;
      CREATE INDEX messages_unrecorded ON messages (room_id, event_seq) WHERE recorded_seq <> event_seq;
    `,
  },
];
