import type { Migration } from "../common/db.js";

/**
 * The relay database. Sequences are per queue and assigned by bumping
 * `queues.last_seq` inside the sending transaction: the row lock that bump
 * takes makes a queue's entries commit in sequence order, so a reader that
 * has seen seq N never later finds a committed N-1 it skipped.
 */
export const relayMigrations: Migration[] = [
  {
    version: 1,
    name: "identities, devices, queues",
    sql: `
      CREATE TABLE identities (
        id text PRIMARY KEY,
        public_key bytea NOT NULL,
        created_at_ms bigint NOT NULL
      );
      CREATE TABLE devices (
        id text PRIMARY KEY,
        identity_id text NOT NULL REFERENCES identities (id),
        public_key bytea NOT NULL,
        suspended boolean NOT NULL DEFAULT false,
        created_at_ms bigint NOT NULL
      );
      CREATE INDEX devices_identity ON devices (identity_id);

      -- kind: 1 = device queue, 2 = identity queue
      CREATE TABLE queues (
        kind smallint NOT NULL,
        id text NOT NULL,
        last_seq bigint NOT NULL DEFAULT 0,
        depth bigint NOT NULL DEFAULT 0,
        bytes bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (kind, id)
      );
      CREATE TABLE entries (
        kind smallint NOT NULL,
        queue_id text NOT NULL,
        seq bigint NOT NULL,
        message_id text NOT NULL,
        sender_device text NOT NULL,
        sender_identity text NOT NULL,
        content_type text NOT NULL,
        payload bytea NOT NULL,
        size int NOT NULL,
        enqueued_at_ms bigint NOT NULL,
        PRIMARY KEY (kind, queue_id, seq)
      );
      CREATE INDEX entries_age ON entries (enqueued_at_ms);

      -- One row per accepted (sender, message id): the idempotency record and
      -- the receipt a retried send gets back.
      CREATE TABLE sent_messages (
        sender_device text NOT NULL,
        message_id text NOT NULL,
        accepted_at_ms bigint NOT NULL,
        queued jsonb,
        PRIMARY KEY (sender_device, message_id)
      );
      CREATE INDEX sent_messages_age ON sent_messages (accepted_at_ms);

      -- How far each device has acknowledged its identity's queue.
      CREATE TABLE identity_cursors (
        identity_id text NOT NULL,
        device_id text NOT NULL REFERENCES devices (id),
        acked_seq bigint NOT NULL,
        PRIMARY KEY (identity_id, device_id)
      );

      -- Challenges already answered: a captured signature cannot be replayed.
      CREATE TABLE used_challenges (
        nonce bytea PRIMARY KEY,
        expires_at_ms bigint NOT NULL
      );

      CREATE TABLE purge_counters (
        id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
        messages bigint NOT NULL DEFAULT 0,
        bytes bigint NOT NULL DEFAULT 0
      );
      INSERT INTO purge_counters DEFAULT VALUES;
    `,
  },
  {
    version: 10,
    name: "replication position",
    sql: `
      -- Where this database stands in the relay's change stream (see
      -- services/relay/replication). On a primary every committed change bumps
      -- change_seq/stream_seq in its own transaction: the row lock orders
      -- commits exactly as the stream orders their changes.
      CREATE TABLE replication_state (
        id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
        change_seq bigint NOT NULL DEFAULT 0,
        stream_seq bigint NOT NULL DEFAULT 0,
        epoch bigint NOT NULL DEFAULT 0,
        primary_replica text NOT NULL DEFAULT '',
        -- Primary's commit time of the last change applied/committed.
        last_commit_ms bigint NOT NULL DEFAULT 0
      );
      INSERT INTO replication_state DEFAULT VALUES;
    `,
  },
  {
    version: 20,
    name: "workspace directory",
    sql: `
      -- Workspace sync (client/sync): which identities are members with which
      -- role, their endpoints and suspension, so the relay refuses to queue
      -- workspace changes for a suspended endpoint; and the outgoing-queue
      -- figures endpoints report (services/relay/workspace-server.ts).
      CREATE TABLE ws_workspaces (
        id text PRIMARY KEY,
        created_by text NOT NULL,
        created_at_ms bigint NOT NULL,
        size_bytes bigint NOT NULL DEFAULT 0
      );
      CREATE TABLE ws_members (
        workspace_id text NOT NULL REFERENCES ws_workspaces (id),
        identity_id text NOT NULL,
        role text NOT NULL CHECK (role IN ('manager', 'participant')),
        PRIMARY KEY (workspace_id, identity_id)
      );
      CREATE TABLE ws_endpoints (
        workspace_id text NOT NULL,
        device_id text NOT NULL,
        identity_id text NOT NULL,
        suspended boolean NOT NULL DEFAULT false,
        reason text CHECK (reason IN ('auto', 'manager')),
        PRIMARY KEY (workspace_id, device_id),
        FOREIGN KEY (workspace_id, identity_id) REFERENCES ws_members (workspace_id, identity_id)
      );
      CREATE TABLE ws_figures (
        workspace_id text NOT NULL REFERENCES ws_workspaces (id),
        reporter_device text NOT NULL,
        identity_id text NOT NULL,
        outstanding_changes bigint NOT NULL,
        outstanding_bytes bigint NOT NULL,
        oldest_age_seconds double precision NOT NULL,
        reported_at_ms bigint NOT NULL,
        PRIMARY KEY (workspace_id, reporter_device, identity_id)
      );
    `,
  },
];
