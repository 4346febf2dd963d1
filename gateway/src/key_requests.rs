//! Requests for an issuer's keys: a 28000 whose detail names a key its issuer has not published
//! (yet) asks for that issuer's keys to be fetched again (issuers.rs fetches them). Here, at the
//! bottom, so that error.rs can ask without knowing who answers.

use std::sync::OnceLock;
use tokio::sync::mpsc;

/// Requests waiting at most: beyond, a request is dropped (the issuer's keys are being fetched, or
/// will be at the next one), so unknown keys cannot make the queue grow.
const WAITING: usize = 64;

static REQUESTS: OnceLock<mpsc::Sender<String>> = OnceLock::new();

/// Asks for the keys of the issuer `detail` names, if it is an unknown key's detail.
pub fn unknown_key(detail: &str) {
    if let (Some(iss), Some(requests)) = (hatchat_wire::issuers::unknown_key_issuer(detail), REQUESTS.get()) {
        let _ = requests.try_send(iss.to_string());
    }
}

/// The requests, for the one who fetches keys (`None` if someone already takes them).
pub fn take() -> Option<mpsc::Receiver<String>> {
    let (sender, receiver) = mpsc::channel(WAITING);
    REQUESTS.set(sender).ok().map(|()| receiver)
}
