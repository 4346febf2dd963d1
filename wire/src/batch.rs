//! Group commit: the items the gateway hands `hatchat.send_messages`, and the answers it gets
//! back, one per item in item order.

use serde::{Deserialize, Serialize};

/// One send of a batch. The payload travels as the client's JSON text (`payloadText`), so the
/// extension converts each on its own and one payload PostgreSQL cannot store fails only its own
/// item. SQL callers may give `payload` (a JSON value) instead.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item<'a> {
    pub token: Option<&'a str>,
    pub channel_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_text: Option<&'a str>,
    /// The client's id for this send: a retry with the same id answers the first send's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<&'a str>,
}

/// An item that failed: exactly the error it gets when sent alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    pub sqlstate: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A failed item's answer is `{"error": {...}}`; any other answer is the sent message's
/// (`{channelId, seq, createdAt, fromUserId}`, as `send_message` returns it).
#[derive(Debug, Serialize, Deserialize)]
pub struct Failed {
    pub error: ItemError,
}

impl ItemError {
    /// The answer text of a failed item.
    pub fn to_answer(&self) -> String {
        serde_json::to_string(&Failed { error: self.clone() }).expect("an error serializes")
    }

    /// The error of an answer, if it is one.
    pub fn from_answer(answer: &str) -> Option<ItemError> {
        // Only an object whose first key is "error" can be one: a sent message starts otherwise.
        if !answer.trim_start().starts_with("{\"error\"") {
            return None;
        }
        serde_json::from_str::<Failed>(answer).ok().map(|failed| failed.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_round_trip_and_messages_are_not_errors() {
        let error = ItemError { sqlstate: "22P05".into(), message: "bad".into(), detail: None };
        assert_eq!(ItemError::from_answer(&error.to_answer()), Some(error));
        let sent = r#"{"seq": 2, "channelId": "general", "createdAt": "x", "fromUserId": "y"}"#;
        assert_eq!(ItemError::from_answer(sent), None);
    }

    #[test]
    fn items_say_payload_text() {
        let item =
            Item { token: Some("t"), channel_id: Some("c"), payload_text: Some("[1]"), client_id: None };
        assert_eq!(
            serde_json::to_string(&item).unwrap(),
            r#"{"token":"t","channelId":"c","payloadText":"[1]"}"#
        );
        let retried = Item { client_id: Some("k1"), ..item };
        assert_eq!(
            serde_json::to_string(&retried).unwrap(),
            r#"{"token":"t","channelId":"c","payloadText":"[1]","clientId":"k1"}"#
        );
    }
}
