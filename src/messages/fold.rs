//! Folded windows: each message as it stands now — its latest edit's payload (`edited: true`),
//! `deleted: true` with a null payload, and `reactions` counted per reaction — and no event rows.
//! What a client gets by replaying the events of an unfolded window, without the replay. The
//! current state is kept on the message row (`edit_seq`, `deleted`) and in `hatchat.reactions`,
//! updated by the event functions (events.rs) under the channel's counter lock.

/// The fold of one row `m` (a message, never an event) with its latest edit `e` (if any). The edit
/// is looked up by its whole key, only for an edited message: as a join, plans of a channel whose
/// messages were never edited read the channel's every row once per message of the page.
macro_rules! folded {
    ($where:literal, $time:literal, $order:literal) => {
        concat!(
            "SELECT coalesce(jsonb_agg(w.message ORDER BY w.seq), '[]'::jsonb) \
               FROM (SELECT m.seq, hatchat.message_json(m.seq, m.created_at, m.from_user_id, u.username, m.payload, m.kind, m.target, m.client_id) || jsonb_build_object( \
                            'payload', CASE WHEN m.edit_seq IS NULL THEN m.payload ELSE coalesce( \
                                (SELECT e.payload FROM hatchat.messages e WHERE e.channel_id = m.channel_id AND e.seq = m.edit_seq), \
                                m.payload) END, \
                            'edited', m.edit_seq IS NOT NULL, 'deleted', m.deleted, \
                            'reactions', (SELECT coalesce(jsonb_object_agg(r.reaction, r.n), '{}'::jsonb) \
                                            FROM (SELECT r.reaction, count(*) AS n FROM hatchat.reactions r \
                                                   WHERE r.channel_id = m.channel_id AND r.seq = m.seq \
                                                   GROUP BY r.reaction) r)) AS message \
                       FROM hatchat.messages m LEFT JOIN hatchat.users u ON u.id = m.from_user_id \
                      WHERE m.channel_id = $1 AND m.kind IS NULL ",
            $where,
            $time,
            " ORDER BY ",
            $order,
            " LIMIT $4) w"
        )
    };
}

/// As `WINDOW_AFTER_SEQ`, `WINDOW_BY_SEQ` and `WINDOW_BY_TIME` (messages/mod.rs), folded.
pub const FOLDED: [&str; 3] = [
    folded!("AND m.seq > $5", "", "m.seq"),
    folded!(
        "AND m.seq > $5",
        " AND m.created_at > $2::timestamptz AND m.created_at < $3::timestamptz",
        "m.seq"
    ),
    folded!("", " AND m.created_at > $2::timestamptz AND m.created_at < $3::timestamptz", "m.created_at"),
];
