-- hatchat 0.1.0 -> 0.2.0, run by `ALTER EXTENSION hatchat UPDATE` (or `... UPDATE TO '0.2.0'`).
--
-- pgrx writes each release's install script (hatchat--<version>.sql, from the code); it cannot
-- write upgrade scripts, so each schema or function change adds its statements here by hand, in
-- the order the change was made. The rule for contributors (README, "Upgrading"): a change that
-- alters what `CREATE EXTENSION hatchat` makes also lands here, and scripts/test-upgrade.sh checks
-- that 0.1.0 updated by this script is the same database, object for object, as 0.2.0 installed
-- afresh, and that everything written before reads back the same after.
--
-- New functions are created as pgrx's install script creates them (MODULE_PATHNAME and the
-- wrapper's symbol), and API functions are then given to hatchat_owner as sql/finalize.sql does.
-- A function whose arguments change is dropped and created again (CREATE OR REPLACE cannot change
-- a signature); its grants and settings are restated. A new column goes at the end of its table
-- in sql/schema.sql too, where ALTER TABLE ... ADD COLUMN puts it.

\echo Use "ALTER EXTENSION hatchat UPDATE" to load this file. \quit

-- ===== Chat semantics (issue 17): idempotent sends, read positions, edits, deletes, reactions =====

ALTER TABLE hatchat.users ADD COLUMN read_receipts boolean NOT NULL DEFAULT true;
ALTER TABLE hatchat.channels ADD COLUMN counted bigint NOT NULL DEFAULT 0;
ALTER TABLE hatchat.members
    ADD COLUMN read_seq bigint NOT NULL DEFAULT 0,
    ADD COLUMN read_count bigint NOT NULL DEFAULT 0;
ALTER TABLE hatchat.messages
    ADD COLUMN client_id text,
    ADD COLUMN kind text CHECK (kind IN ('edit', 'delete', 'reaction')),
    ADD COLUMN target bigint,
    ADD COLUMN counted bigint NOT NULL DEFAULT 0,
    ADD COLUMN edit_seq bigint,
    ADD COLUMN deleted boolean NOT NULL DEFAULT false,
    ADD CHECK ((kind IS NULL) = (target IS NULL));
CREATE UNIQUE INDEX messages_client_id ON hatchat.messages (channel_id, from_user_id, client_id)
    WHERE client_id IS NOT NULL;
CREATE INDEX messages_events ON hatchat.messages (channel_id, kind, target) WHERE kind IS NOT NULL;

CREATE TABLE hatchat.reactions (
    channel_id text NOT NULL,
    seq        bigint NOT NULL,
    user_id    uuid NOT NULL,
    reaction   text NOT NULL,
    PRIMARY KEY (channel_id, seq, user_id, reaction)
);
REVOKE ALL ON hatchat.reactions FROM PUBLIC;
ALTER TABLE hatchat.reactions OWNER TO hatchat_owner;

-- Existing history: every message so far is a user's post or a system message (no events yet).
-- The running counts are what they would be had the messages been sent by 0.2.0, and every member
-- has read everything: a release that starts counting should not call old history unread.
UPDATE hatchat.messages m
   SET counted = n.counted
  FROM (SELECT channel_id, seq,
               count(*) FILTER (WHERE from_user_id <> '00000000-0000-0000-0000-000000000000')
                   OVER (PARTITION BY channel_id ORDER BY seq) AS counted
          FROM hatchat.messages) n
 WHERE m.channel_id = n.channel_id AND m.seq = n.seq;
UPDATE hatchat.channels c
   SET counted = coalesce((SELECT max(m.counted) FROM hatchat.messages m WHERE m.channel_id = c.id), 0);
UPDATE hatchat.members mb
   SET read_seq = c.last_seq, read_count = c.counted
  FROM hatchat.channels c
 WHERE c.id = mb.channel_id;

CREATE OR REPLACE FUNCTION hatchat.message_json(m hatchat.messages, username text) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('seq', m.seq, 'createdAt', hatchat.iso_time(m.created_at),
                              'fromUserId', m.from_user_id, 'username', username,
                              'payload', m.payload)
           || jsonb_strip_nulls(jsonb_build_object('event', m.kind, 'target', m.target,
                                                   'clientId', m.client_id));

CREATE FUNCTION hatchat.unread(c hatchat.channels, m hatchat.members) RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN CASE WHEN m.user_id IS NOT NULL THEN
        greatest(0, c.counted - m.read_count
                    - (SELECT count(*) FROM hatchat.messages d
                        WHERE d.channel_id = c.id AND d.kind = 'delete' AND d.target > m.read_seq))
    END;

CREATE FUNCTION hatchat.read_state_json(c hatchat.channels, me hatchat.members) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('lastSeq', c.last_seq, 'readSeq', me.read_seq, 'unread', hatchat.unread(c, me));

-- Sends take an optional client id; get_messages can fold.
DROP FUNCTION hatchat.send_message(text, text, jsonb);
CREATE FUNCTION hatchat.send_message(
    "token" text, "channel_id" text, "payload" jsonb, "client_id" text DEFAULT NULL
) RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'send_message_wrapper';
ALTER FUNCTION hatchat.send_message(text, text, jsonb, text) SET plan_cache_mode = force_generic_plan;

DROP FUNCTION hatchat.send_message_text(text, text, text);
CREATE FUNCTION hatchat.send_message_text(
    "token" text, "channel_id" text, "payload_text" text, "client_id" text DEFAULT NULL
) RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'send_message_text_wrapper';
ALTER FUNCTION hatchat.send_message_text(text, text, text, text) SET plan_cache_mode = force_generic_plan;

DROP FUNCTION hatchat.get_messages(text, text, text, text, integer, bigint);
CREATE FUNCTION hatchat.get_messages(
    "token" text, "channel_id" text, "since" text DEFAULT '-infinity', "until" text DEFAULT 'infinity',
    "row_limit" integer DEFAULT 20, "after_seq" bigint DEFAULT NULL, "fold" boolean DEFAULT false
) RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'get_messages_wrapper';

CREATE FUNCTION hatchat.mark_read("token" text, "channel_id" text, "seq" bigint) RETURNS jsonb
SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'mark_read_wrapper';
CREATE FUNCTION hatchat.set_read_receipts("token" text, "enabled" boolean, "self_id" uuid DEFAULT NULL)
RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'set_read_receipts_wrapper';
CREATE FUNCTION hatchat.edit_message("token" text, "channel_id" text, "seq" bigint, "payload" jsonb)
RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'edit_message_wrapper';
CREATE FUNCTION hatchat.delete_message("token" text, "channel_id" text, "seq" bigint) RETURNS jsonb
SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'delete_message_wrapper';
CREATE FUNCTION hatchat.react("token" text, "channel_id" text, "seq" bigint, "reaction" text)
RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'react_wrapper';
CREATE FUNCTION hatchat.unreact("token" text, "channel_id" text, "seq" bigint, "reaction" text)
RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'unreact_wrapper';

ALTER FUNCTION hatchat.send_message(text, text, jsonb, text) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.send_message_text(text, text, text, text) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.get_messages(text, text, text, text, integer, bigint, boolean) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.mark_read(text, text, bigint) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.set_read_receipts(text, boolean, uuid) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.edit_message(text, text, bigint, jsonb) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.delete_message(text, text, bigint) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.react(text, text, bigint, text) OWNER TO hatchat_owner;
ALTER FUNCTION hatchat.unreact(text, text, bigint, text) OWNER TO hatchat_owner;

-- ===== Live streams (issue 16): one read of a channel's window per wake-up, for the gateway =====

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hatchat_gateway') THEN
        CREATE ROLE hatchat_gateway NOLOGIN;
    END IF;
END
$$;

CREATE FUNCTION hatchat.channel_window(
    "channel_id" text, "after_seq" bigint, "row_limit" integer, "user_ids" uuid[]
) RETURNS jsonb SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'channel_window_wrapper';
REVOKE EXECUTE ON FUNCTION hatchat.channel_window(text, bigint, integer, uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hatchat.channel_window(text, bigint, integer, uuid[]) TO hatchat_gateway;
ALTER FUNCTION hatchat.channel_window(text, bigint, integer, uuid[]) OWNER TO hatchat_owner;

CREATE FUNCTION hatchat.stream_caller("token" text) RETURNS jsonb
SECURITY DEFINER SET search_path TO pg_catalog, pg_temp
LANGUAGE c AS 'MODULE_PATHNAME', 'stream_caller_wrapper';
ALTER FUNCTION hatchat.stream_caller(text) OWNER TO hatchat_owner;

-- ===== One shape for a send's answer (was built in four statements) =====

-- What a send answers: alone or in a batch, the first time or retried with its client id.
CREATE FUNCTION hatchat.sent_json(channel_id text, seq bigint, created_at timestamptz, from_user_id uuid)
    RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN jsonb_build_object('channelId', channel_id, 'seq', seq,
                              'createdAt', hatchat.iso_time(created_at), 'fromUserId', from_user_id);
