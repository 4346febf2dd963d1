//! Wake-ups: how the extension tells every gateway "look again" through PostgreSQL's NOTIFY.
//!
//! A wake-up names what changed by key, not by name: a 64-bit SipHash-2-4 of a channel id or a
//! user id (each kind hashed apart) under a secret of the database's (`Secret`). Keys have a fixed
//! size, so the extension can queue them in shared memory for its announcer. A NOTIFY payload can
//! be heard by any role allowed to LISTEN; without the secret, which only hatchat's owner and the
//! gateway role may read, a key tells such a role nothing, and it cannot test a guess ("is this
//! `c:game/alice/bob`?"). A gateway computes the same key for what each waiter waits on. Two ids
//! that share a key only cost a waiter a query that finds nothing new: a wake-up only ever means
//! "look again", and the query decides what is new.

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

/// The secret a database's keys are made with: 16 random bytes that `CREATE EXTENSION hatchat`
/// makes (`hatchat.wake_secret`), read by the extension and by each gateway when it starts
/// (`hatchat.wake_secret()`, hex). Never printed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secret([u8; 16]);

impl Secret {
    pub fn from_bytes(bytes: &[u8]) -> Option<Secret> {
        Some(Secret(bytes.try_into().ok()?))
    }

    /// The secret as `hatchat.wake_secret()` answers it: 32 hex digits.
    pub fn from_hex(hex: &str) -> Option<Secret> {
        if hex.len() != 32 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Secret(bytes))
    }

    /// The key of a channel id or a user id (a uuid, in its lowercase hyphenated form).
    pub fn key(&self, kind: Kind, id: &str) -> u64 {
        let prefix = match kind {
            Kind::Channel => b"c:",
            Kind::User => b"u:",
        };
        self.keyed(prefix, id)
    }

    /// The key of a channel's presence and typing (`p:` hashed apart from its messages, so a typing
    /// wakes no message read). It travels among the channel keys of a wake-up.
    pub fn presence_key(&self, channel: &str) -> u64 {
        self.keyed(b"p:", channel)
    }

    fn keyed(&self, prefix: &[u8; 2], id: &str) -> u64 {
        use std::hash::Hasher;
        let mut hasher = siphasher::sip::SipHasher24::new_with_key(&self.0);
        hasher.write(prefix);
        hasher.write(id.as_bytes());
        hasher.finish()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
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

    const SECRET: &str = "000102030405060708090a0b0c0d0e0f";

    #[test]
    fn keys_are_stable_keyed_and_kinds_apart() {
        // Fixed values: both sides of the wire, and a client in any language that holds the
        // secret, compute these (SipHash-2-4 of "c:general" under the key 00 01 .. 0f).
        let secret = Secret::from_hex(SECRET).unwrap();
        assert_eq!(format!("{:016x}", secret.key(Kind::Channel, "general")), "f39e1dad62c3d1e7");
        let user = "6f1c3a4e-3b5d-4f7a-9c2e-1d2e3f4a5b6c";
        assert_ne!(secret.key(Kind::User, user), secret.key(Kind::Channel, user));
        let other = Secret::from_bytes(&[7; 16]).unwrap();
        assert_ne!(secret.key(Kind::Channel, "general"), other.key(Kind::Channel, "general"));
        assert_eq!(format!("{secret:?}"), "Secret(..)");
        for bad in ["", "00", &"zz".repeat(16), &"0".repeat(33), "é0000000000000000000000000000000"] {
            assert_eq!(Secret::from_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn payloads_round_trip_under_the_limit() {
        let secret = Secret::from_hex(SECRET).unwrap();
        let channels: Vec<u64> = (0..1000).map(|i| secret.key(Kind::Channel, &format!("c{i}"))).collect();
        let users: Vec<u64> = (0..10).map(|i| secret.key(Kind::User, &format!("u{i}"))).collect();
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
