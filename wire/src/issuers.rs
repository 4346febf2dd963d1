//! Trusted issuers: what the extension tells the gateway when a token names a key its issuer's
//! JWKS does not hold (yet). The gateway then fetches that issuer's keys again (at most once a
//! minute per issuer), so a key the issuer has just rotated in works on the client's retry.

const PREFIX: &str = "unknown key ";
const OF: &str = " of issuer ";

/// The 28000 error's detail for a token signed by key `kid` that issuer `iss` has not published.
pub fn unknown_key_detail(iss: &str, kid: &str) -> String {
    format!("{PREFIX}{}{OF}{iss}", quote(kid))
}

/// The issuer of an unknown-key detail, if `detail` is one.
pub fn unknown_key_issuer(detail: &str) -> Option<&str> {
    let rest = detail.strip_prefix(PREFIX)?;
    let kid_end = quoted_end(rest)?;
    rest[kid_end..].strip_prefix(OF)
}

/// `kid` as a JSON string, so whatever it holds, the detail reads back unambiguously.
fn quote(kid: &str) -> String {
    serde_json::Value::from(kid).to_string()
}

/// Where a JSON string at the start of `text` ends.
fn quoted_end(text: &str) -> Option<usize> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<String>();
    stream.next()?.ok()?;
    Some(stream.byte_offset())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_reads_back_whatever_the_key_id_holds() {
        for kid in ["k1", "a\" of issuer evil", "", "ключ"] {
            let detail = unknown_key_detail("https://app.example", kid);
            assert_eq!(unknown_key_issuer(&detail), Some("https://app.example"), "{detail}");
        }
        assert_eq!(unknown_key_issuer("invalid or expired token"), None);
    }
}
