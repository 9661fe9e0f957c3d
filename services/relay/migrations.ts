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
  {
    version: 30,
    name: "one-statement send and ack",
    sql: `
      -- The common case of a send group (every message new, every party
      -- present and active, every queue under its quota) in one statement, so
      -- it runs in autocommit: one round trip instead of BEGIN, four
      -- statements and COMMIT (services/relay/fast-path.ts). Anything else
      -- raises PR001 (resend, party problem) or PR002 (quota) before or
      -- instead of committing, and the caller takes the general path.
      -- m_*: one element per message; payloads: their bytes end to end (one
      -- binary parameter, m_off/m_size slice it); e_*: one per (message,
      -- recipient), e_ord its place among the group's entries of that queue;
      -- q_*: the queues, sorted, so that concurrent groups lock them in one order.
      CREATE FUNCTION relay_enqueue(
        m_sd text[], m_si text[], m_mid text[], m_ct text[], m_off int[], m_size int[], payloads bytea,
        e_msg int[], e_kind smallint[], e_queue text[], e_rord int[], e_ord int[],
        q_kind smallint[], q_id text[], q_cnt bigint[], q_bytes bigint[],
        now_ms bigint, max_messages bigint, max_bytes bigint)
      RETURNS TABLE (kind smallint, id text, last_seq bigint)
      LANGUAGE plpgsql AS $fn$
      #variable_conflict use_column
      DECLARE
        b_kind smallint[]; b_id text[]; b_last bigint[]; b_cnt bigint[]; full_queue text;
      BEGIN
        IF EXISTS (SELECT 1 FROM sent_messages s JOIN unnest(m_sd, m_mid) AS t(sd, mid)
                     ON s.sender_device = t.sd AND s.message_id = t.mid) THEN
          RAISE EXCEPTION 'a message id was used before' USING ERRCODE = 'PR001';
        END IF;
        IF EXISTS (SELECT 1 FROM unnest(m_sd) AS t(sd) LEFT JOIN devices d ON d.id = t.sd WHERE d.id IS NULL OR d.suspended)
           OR EXISTS (SELECT 1 FROM unnest(e_msg, e_kind, e_queue) AS e(msg, k, q)
                       WHERE NOT CASE WHEN e.k = 1
                         THEN EXISTS (SELECT 1 FROM devices d WHERE d.id = e.q AND (NOT d.suspended OR d.id = m_sd[e.msg]))
                         ELSE EXISTS (SELECT 1 FROM identities i WHERE i.id = e.q) END) THEN
          RAISE EXCEPTION 'a party is unknown or suspended' USING ERRCODE = 'PR001';
        END IF;
        WITH b AS (
          INSERT INTO queues AS q (kind, id, last_seq, depth, bytes)
          SELECT * FROM unnest(q_kind, q_id, q_cnt, q_cnt, q_bytes)
          ON CONFLICT (kind, id) DO UPDATE SET last_seq = q.last_seq + EXCLUDED.last_seq,
            depth = q.depth + EXCLUDED.depth, bytes = q.bytes + EXCLUDED.bytes
          RETURNING q.kind, q.id, q.last_seq, q.depth, q.bytes)
        SELECT array_agg(b.kind), array_agg(b.id), array_agg(b.last_seq), array_agg(t.cnt),
               min(CASE WHEN b.depth > max_messages OR b.bytes > max_bytes THEN b.kind || ':' || b.id END)
          INTO b_kind, b_id, b_last, b_cnt, full_queue
          FROM b JOIN unnest(q_kind, q_id, q_cnt) AS t(kind, id, cnt) ON t.kind = b.kind AND t.id = b.id;
        IF full_queue IS NOT NULL THEN
          RAISE EXCEPTION 'queue % would pass its quota', full_queue USING ERRCODE = 'PR002';
        END IF;
        WITH e AS (
          SELECT e.msg, e.k, e.q, e.rord, b.top - b.cnt + e.ord AS seq
            FROM unnest(e_msg, e_kind, e_queue, e_rord, e_ord) AS e(msg, k, q, rord, ord)
            JOIN unnest(b_kind, b_id, b_last, b_cnt) AS b(k, q, top, cnt) ON b.k = e.k AND b.q = e.q),
        ins AS (
          INSERT INTO entries (kind, queue_id, seq, message_id, sender_device, sender_identity, content_type, payload, size, enqueued_at_ms)
          SELECT e.k, e.q, e.seq, m_mid[e.msg], m_sd[e.msg], m_si[e.msg], m_ct[e.msg],
                 substring(payloads FROM m_off[e.msg] + 1 FOR m_size[e.msg]), m_size[e.msg], now_ms
            FROM e)
        INSERT INTO sent_messages (sender_device, message_id, accepted_at_ms, queued)
        SELECT m_sd[e.msg], m_mid[e.msg], now_ms,
               jsonb_agg(jsonb_build_object('queue', jsonb_build_object('kind', CASE e.k WHEN 1 THEN 'device' ELSE 'identity' END, 'id', e.q), 'seq', e.seq) ORDER BY e.rord)
          FROM e GROUP BY e.msg;
        RETURN QUERY SELECT * FROM unnest(b_kind, b_id, b_last);
      END
      $fn$;

      -- A cumulative ack in one statement (the same steps as RelayStore.ack):
      -- PR003 when a sequence is past the queue's last one.
      CREATE FUNCTION relay_ack(device text, identity text, device_seq bigint, identity_seq bigint)
      RETURNS bigint
      LANGUAGE plpgsql AS $fn$
      #variable_conflict use_column
      DECLARE
        last_known bigint; upto bigint; n bigint; deleted bigint := 0;
      BEGIN
        IF device_seq > 0 THEN
          SELECT q.last_seq INTO last_known FROM queues q WHERE q.kind = 1 AND q.id = device;
          IF device_seq > COALESCE(last_known, 0) THEN
            RAISE EXCEPTION 'ack % is past the last sequence % of the device queue', device_seq, COALESCE(last_known, 0) USING ERRCODE = 'PR003';
          END IF;
          WITH d AS (DELETE FROM entries WHERE kind = 1 AND queue_id = device AND seq <= device_seq RETURNING size),
               c AS (SELECT count(*) AS n, COALESCE(sum(size), 0) AS b FROM d),
               u AS (UPDATE queues SET depth = depth - c.n, bytes = bytes - c.b FROM c WHERE c.n > 0 AND kind = 1 AND id = device)
          SELECT c.n INTO n FROM c;
          deleted := deleted + n;
        END IF;
        IF identity_seq > 0 THEN
          SELECT q.last_seq INTO last_known FROM queues q WHERE q.kind = 2 AND q.id = identity;
          IF identity_seq > COALESCE(last_known, 0) THEN
            RAISE EXCEPTION 'ack % is past the last sequence % of the identity queue', identity_seq, COALESCE(last_known, 0) USING ERRCODE = 'PR003';
          END IF;
          INSERT INTO identity_cursors (identity_id, device_id, acked_seq) VALUES (identity, device, identity_seq)
          ON CONFLICT (identity_id, device_id) DO UPDATE SET acked_seq = GREATEST(identity_cursors.acked_seq, EXCLUDED.acked_seq);
          SELECT min(COALESCE(ic.acked_seq, 0)) INTO upto FROM devices d
            LEFT JOIN identity_cursors ic ON ic.identity_id = d.identity_id AND ic.device_id = d.id
           WHERE d.identity_id = identity AND NOT d.suspended;
          IF COALESCE(upto, 0) > 0 THEN
            WITH d AS (DELETE FROM entries WHERE kind = 2 AND queue_id = identity AND seq <= upto RETURNING size),
                 c AS (SELECT count(*) AS n, COALESCE(sum(size), 0) AS b FROM d),
                 u AS (UPDATE queues SET depth = depth - c.n, bytes = bytes - c.b FROM c WHERE c.n > 0 AND kind = 2 AND id = identity)
            SELECT c.n INTO n FROM c;
            deleted := deleted + n;
          END IF;
        END IF;
        RETURN deleted;
      END
      $fn$;
    `,
  },
  {
    version: 31,
    name: "send checks by primary key",
    sql: `
      CREATE OR REPLACE FUNCTION relay_enqueue(
        m_sd text[], m_si text[], m_mid text[], m_ct text[], m_off int[], m_size int[], payloads bytea,
        e_msg int[], e_kind smallint[], e_queue text[], e_rord int[], e_ord int[],
        q_kind smallint[], q_id text[], q_cnt bigint[], q_bytes bigint[],
        now_ms bigint, max_messages bigint, max_bytes bigint)
      RETURNS TABLE (kind smallint, id text, last_seq bigint)
      LANGUAGE plpgsql AS $fn$
      #variable_conflict use_column
      DECLARE
        b_kind smallint[]; b_id text[]; b_last bigint[]; b_cnt bigint[]; full_queue text;
      BEGIN
        -- One primary-key probe per message and per party: the lookups are
        -- correlated subqueries (LIMIT 1 / scalar), which the planner cannot
        -- turn into hash joins over whole tables. As joins, the plan cached
        -- while the tables were small (a new relay) kept scanning them as
        -- they grew.
        IF EXISTS (SELECT 1 FROM unnest(m_sd, m_mid) AS t(sd, mid)
                     CROSS JOIN LATERAL (SELECT 1 FROM sent_messages s
                                          WHERE s.sender_device = t.sd AND s.message_id = t.mid LIMIT 1) AS used) THEN
          RAISE EXCEPTION 'a message id was used before' USING ERRCODE = 'PR001';
        END IF;
        IF EXISTS (SELECT 1 FROM unnest(m_sd) AS t(sd)
                    WHERE (SELECT NOT d.suspended FROM devices d WHERE d.id = t.sd) IS NOT TRUE)
           OR EXISTS (SELECT 1 FROM unnest(e_msg, e_kind, e_queue) AS e(msg, k, q)
                       WHERE CASE WHEN e.k = 1
                         THEN (SELECT NOT d.suspended OR d.id = m_sd[e.msg] FROM devices d WHERE d.id = e.q)
                         ELSE (SELECT true FROM identities i WHERE i.id = e.q) END IS NOT TRUE) THEN
          RAISE EXCEPTION 'a party is unknown or suspended' USING ERRCODE = 'PR001';
        END IF;
        WITH b AS (
          INSERT INTO queues AS q (kind, id, last_seq, depth, bytes)
          SELECT * FROM unnest(q_kind, q_id, q_cnt, q_cnt, q_bytes)
          ON CONFLICT (kind, id) DO UPDATE SET last_seq = q.last_seq + EXCLUDED.last_seq,
            depth = q.depth + EXCLUDED.depth, bytes = q.bytes + EXCLUDED.bytes
          RETURNING q.kind, q.id, q.last_seq, q.depth, q.bytes)
        SELECT array_agg(b.kind), array_agg(b.id), array_agg(b.last_seq), array_agg(t.cnt),
               min(CASE WHEN b.depth > max_messages OR b.bytes > max_bytes THEN b.kind || ':' || b.id END)
          INTO b_kind, b_id, b_last, b_cnt, full_queue
          FROM b JOIN unnest(q_kind, q_id, q_cnt) AS t(kind, id, cnt) ON t.kind = b.kind AND t.id = b.id;
        IF full_queue IS NOT NULL THEN
          RAISE EXCEPTION 'queue % would pass its quota', full_queue USING ERRCODE = 'PR002';
        END IF;
        WITH e AS (
          SELECT e.msg, e.k, e.q, e.rord, b.top - b.cnt + e.ord AS seq
            FROM unnest(e_msg, e_kind, e_queue, e_rord, e_ord) AS e(msg, k, q, rord, ord)
            JOIN unnest(b_kind, b_id, b_last, b_cnt) AS b(k, q, top, cnt) ON b.k = e.k AND b.q = e.q),
        ins AS (
          INSERT INTO entries (kind, queue_id, seq, message_id, sender_device, sender_identity, content_type, payload, size, enqueued_at_ms)
          SELECT e.k, e.q, e.seq, m_mid[e.msg], m_sd[e.msg], m_si[e.msg], m_ct[e.msg],
                 substring(payloads FROM m_off[e.msg] + 1 FOR m_size[e.msg]), m_size[e.msg], now_ms
            FROM e)
        INSERT INTO sent_messages (sender_device, message_id, accepted_at_ms, queued)
        SELECT m_sd[e.msg], m_mid[e.msg], now_ms,
               jsonb_agg(jsonb_build_object('queue', jsonb_build_object('kind', CASE e.k WHEN 1 THEN 'device' ELSE 'identity' END, 'id', e.q), 'seq', e.seq) ORDER BY e.rord)
          FROM e GROUP BY e.msg;
        RETURN QUERY SELECT * FROM unnest(b_kind, b_id, b_last);
      END
      $fn$;

      -- A cumulative ack in one statement (the same steps as RelayStore.ack):
      -- PR003 when a sequence is past the queue's last one.
    `,
  },
  {
    version: 32,
    name: "receipts as text, resends found by the primary key",
    sql: `
      -- The one-statement send's receipts (what a resend gets back) as text,
      -- "<d|i><seq>:<queue id>" per recipient, comma-separated (ids hold
      -- neither character): building jsonb cost a fifth of the statement.
      -- Rows written before, and by the general path, keep queued (jsonb);
      -- RelayStore reads either.
      ALTER TABLE sent_messages ADD COLUMN receipt text;

      -- As migration 31, without the probe for message ids used before: the
      -- insert into sent_messages raises unique_violation for them, the
      -- statement rolls back, and the caller takes the general path (as for
      -- PR001). relay_enqueue's Postgres CPU per message of a 32-message
      -- group: 24.5-25.9 -> 19.9-21.7 µs (bench/relay/statement-cost.ts).
      CREATE OR REPLACE FUNCTION relay_enqueue(
          m_sd text[], m_si text[], m_mid text[], m_ct text[], m_off int[], m_size int[], payloads bytea,
          e_msg int[], e_kind smallint[], e_queue text[], e_rord int[], e_ord int[],
          q_kind smallint[], q_id text[], q_cnt bigint[], q_bytes bigint[],
          now_ms bigint, max_messages bigint, max_bytes bigint)
        RETURNS TABLE (kind smallint, id text, last_seq bigint)
        LANGUAGE plpgsql AS $fn$
        #variable_conflict use_column
        DECLARE
          b_kind smallint[]; b_id text[]; b_last bigint[]; b_cnt bigint[]; full_queue text;
        BEGIN
          -- One primary-key probe per party (correlated subqueries, as in
          -- migration 31, so the plan cannot become a scan of whole tables).
          IF EXISTS (SELECT 1 FROM unnest(m_sd) AS t(sd)
                      WHERE (SELECT NOT d.suspended FROM devices d WHERE d.id = t.sd) IS NOT TRUE)
             OR EXISTS (SELECT 1 FROM unnest(e_msg, e_kind, e_queue) AS e(msg, k, q)
                         WHERE CASE WHEN e.k = 1
                           THEN (SELECT NOT d.suspended OR d.id = m_sd[e.msg] FROM devices d WHERE d.id = e.q)
                           ELSE (SELECT true FROM identities i WHERE i.id = e.q) END IS NOT TRUE) THEN
            RAISE EXCEPTION 'a party is unknown or suspended' USING ERRCODE = 'PR001';
          END IF;
          WITH b AS (
            INSERT INTO queues AS q (kind, id, last_seq, depth, bytes)
            SELECT * FROM unnest(q_kind, q_id, q_cnt, q_cnt, q_bytes)
            ON CONFLICT (kind, id) DO UPDATE SET last_seq = q.last_seq + EXCLUDED.last_seq,
              depth = q.depth + EXCLUDED.depth, bytes = q.bytes + EXCLUDED.bytes
            RETURNING q.kind, q.id, q.last_seq, q.depth, q.bytes)
          SELECT array_agg(b.kind), array_agg(b.id), array_agg(b.last_seq), array_agg(t.cnt),
                 min(CASE WHEN b.depth > max_messages OR b.bytes > max_bytes THEN b.kind || ':' || b.id END)
            INTO b_kind, b_id, b_last, b_cnt, full_queue
            FROM b JOIN unnest(q_kind, q_id, q_cnt) AS t(kind, id, cnt) ON t.kind = b.kind AND t.id = b.id;
          IF full_queue IS NOT NULL THEN
            RAISE EXCEPTION 'queue % would pass its quota', full_queue USING ERRCODE = 'PR002';
          END IF;
          WITH e AS (
            SELECT e.msg, e.k, e.q, e.rord, b.top - b.cnt + e.ord AS seq
              FROM unnest(e_msg, e_kind, e_queue, e_rord, e_ord) AS e(msg, k, q, rord, ord)
              JOIN unnest(b_kind, b_id, b_last, b_cnt) AS b(k, q, top, cnt) ON b.k = e.k AND b.q = e.q),
          ins AS (
            INSERT INTO entries (kind, queue_id, seq, message_id, sender_device, sender_identity, content_type, payload, size, enqueued_at_ms)
            SELECT e.k, e.q, e.seq, m_mid[e.msg], m_sd[e.msg], m_si[e.msg], m_ct[e.msg],
                   substring(payloads FROM m_off[e.msg] + 1 FOR m_size[e.msg]), m_size[e.msg], now_ms
              FROM e)
          INSERT INTO sent_messages (sender_device, message_id, accepted_at_ms, receipt)
          SELECT m_sd[e.msg], m_mid[e.msg], now_ms,
                 string_agg(CASE e.k WHEN 1 THEN 'd' ELSE 'i' END || e.seq || ':' || e.q, ',' ORDER BY e.rord)
            FROM e GROUP BY e.msg;
          RETURN QUERY SELECT * FROM unnest(b_kind, b_id, b_last);
        END
        $fn$;
    `,
  },
];
