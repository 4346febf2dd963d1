//! Wake-ups: how the extension tells every gateway "look again" through PostgreSQL's NOTIFY.
//!
//! A wake-up names what changed by key, not by name: the 64-bit FNV-1a hash of a channel id or a
//! user id (each kind hashed apart). Keys have a fixed size, so the extension can queue them in
//! shared memory for its announcer, and a NOTIFY payload, which any role allowed to LISTEN can
//! read, names no channel and no user. A gateway computes the same key for what each waiter waits
//! on. Two ids that share a key only cost a waiter a query that finds nothing new: a wake-up only
//! ever means "look again", and the query decides what is new.

use serde::{Deserialize, Serialize};

/// The NOTIFY channel every wake-up travels on.
pub const NOTIFY_CHANNEL: &str = "hatchat";

/// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; each payload stays under this.
pub const MAX_PAYLOAD_BYTES: usize = 7900;

/// What a key stands for: hashed apart, so a channel and a user with the same id never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Channel,
    User,
}

/// The key of a channel id or a user id (a uuid, in its lowercase hyphenated form).
pub fn key(kind: Kind, id: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let tag: &[u8] = match kind {
        Kind::Channel => b"c:",
        Kind::User => b"u:",
    };
    tag.iter().chain(id.as_bytes()).fold(OFFSET, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(PRIME))
}

/// One NOTIFY payload: `{"channels": ["<16 hex digits>", …], "users": [...], "all": true?}`.
/// `all` asks every waiter to look again (the announcer lost track, e.g. its queue overflowed).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WakeUp {
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "hex_keys")]
    pub channels: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "hex_keys")]
    pub users: Vec<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

impl WakeUp {
    pub fn everyone() -> Self {
        Self { all: true, ..Self::default() }
    }

    pub fn decode(payload: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(payload)
    }

    /// The payloads that carry `keys` (channels first, then users), each under the size limit.
    pub fn encode(channels: &[u64], users: &[u64], all: bool) -> Vec<String> {
        // A key is 16 hex digits, two quotes and a comma: 19 bytes. 400 keys leave room for the
        // field names and brackets far below the limit.
        const PER_PAYLOAD: usize = 400;
        let keyed =
            channels.iter().map(|k| (Kind::Channel, *k)).chain(users.iter().map(|k| (Kind::User, *k)));
        let keyed: Vec<(Kind, u64)> = keyed.collect();
        let mut payloads: Vec<String> = keyed
            .chunks(PER_PAYLOAD)
            .map(|chunk| {
                let mut wake = WakeUp::default();
                for (kind, key) in chunk {
                    match kind {
                        Kind::Channel => wake.channels.push(*key),
                        Kind::User => wake.users.push(*key),
                    }
                }
                serde_json::to_string(&wake).expect("a wake-up serializes")
            })
            .collect();
        if all {
            payloads.push(serde_json::to_string(&WakeUp::everyone()).expect("a wake-up serializes"));
        }
        payloads
    }
}

mod hex_keys {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(keys: &[u64], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(keys.iter().map(|key| format!("{key:016x}")))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
        let texts: Vec<&str> = Vec::deserialize(deserializer)?;
        texts
            .into_iter()
            .map(|text| u64::from_str_radix(text, 16).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_kinds_apart() {
        // Fixed values: both sides of the wire, and a client in any language, compute these.
        assert_eq!(format!("{:016x}", key(Kind::Channel, "general")), "425f9997328c7a90");
        let user = "6f1c3a4e-3b5d-4f7a-9c2e-1d2e3f4a5b6c";
        assert_eq!(format!("{:016x}", key(Kind::User, user)), "1c7250f094a1ec06");
        assert_ne!(key(Kind::Channel, "x"), key(Kind::User, "x"));
    }

    #[test]
    fn payloads_round_trip_under_the_limit() {
        let channels: Vec<u64> = (0..1000).map(|i| key(Kind::Channel, &format!("c{i}"))).collect();
        let users: Vec<u64> = (0..10).map(|i| key(Kind::User, &format!("u{i}"))).collect();
        let payloads = WakeUp::encode(&channels, &users, true);
        let (mut seen_channels, mut seen_users, mut all) = (Vec::new(), Vec::new(), false);
        for payload in &payloads {
            assert!(payload.len() < MAX_PAYLOAD_BYTES, "{}", payload.len());
            let wake = WakeUp::decode(payload).unwrap();
            seen_channels.extend(wake.channels);
            seen_users.extend(wake.users);
            all |= wake.all;
        }
        assert_eq!((seen_channels, seen_users, all), (channels, users, true));
        assert_eq!(WakeUp::encode(&[], &[], false), Vec::<String>::new());
    }

    #[test]
    fn a_payload_reads_as_documented() {
        let wake = WakeUp::decode(r#"{"channels": ["00000000000000ff"], "all": true}"#).unwrap();
        assert_eq!(wake, WakeUp { channels: vec![255], users: vec![], all: true });
        assert!(WakeUp::decode(r#"{"channels": ["zz"]}"#).is_err());
    }
}
