//! The web client end to end in a real browser (Debian's Chromium, driven through chromedriver):
//! two people with separate profiles chat through a share link, each sees the other's messages
//! within a second, in order, exactly once; a reload shows the same history once; the database
//! holds only ciphertext; a link with the wrong key shows "cannot decrypt"; each page shows who is
//! here and who is typing, and drops who went away. Screenshots of the windows are saved under
//! target/browser-test/.

mod support;
use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver process on a free port; killed when dropped.
struct Driver {
    url: String,
    child: Child,
}

impl Driver {
    async fn start() -> Self {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
            "the browser test needs Debian's chromium and chromium-driver \
             (apt-get install chromium chromium-driver; scripts/test.sh installs them)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver { url, child }
    }

    /// A browser with a profile of its own (its own localStorage, so its own identity).
    async fn browser(&self, name: &str) -> fantoccini::Client {
        let profile = std::env::temp_dir().join(format!("hatchat-browser-{name}-{}", short_id()));
        let options = json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1100,900", format!("--user-data-dir={}", profile.display()),
            ],
        });
        let capabilities = serde_json::Map::from_iter([("goog:chromeOptions".to_string(), options)]);
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The messages a window shows: (seq, kind, text).
async fn shown(browser: &fantoccini::Client) -> Vec<(i64, String, String)> {
    let script = "return [...document.querySelectorAll('[data-testid=message]')].map(m => \
                  [Number(m.dataset.seq), m.dataset.kind, m.querySelector('.body').textContent])";
    let value = browser.execute(script, vec![]).await.unwrap();
    serde_json::from_value::<Vec<(i64, String, String)>>(value).unwrap()
}

fn texts(messages: &[(i64, String, String)]) -> Vec<String> {
    messages.iter().filter(|(_, kind, _)| kind == "text").map(|(_, _, text)| text.clone()).collect()
}

/// Waits until `check` holds for what the window shows, at most `within`; returns the wait.
async fn until_shown(
    browser: &fantoccini::Client,
    within: Duration,
    check: impl Fn(&[(i64, String, String)]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let messages = shown(browser).await;
        if check(&messages) {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "not shown within {within:?}: {messages:?}");
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

async fn text_of(browser: &fantoccini::Client, test_id: &str) -> String {
    let element = browser.find(Locator::Css(&format!("[data-testid={test_id}]"))).await.unwrap();
    element.text().await.unwrap()
}

async fn wait_connected(browser: &fantoccini::Client) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while text_of(browser, "status").await != "connected" {
        assert!(Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The element for `css` once it is shown and enabled (views exist in the page while hidden).
/// Starts a channel on the page `browser` shows and returns its share link once it is there.
async fn start_channel(browser: &fantoccini::Client) -> String {
    usable(browser, "[data-testid=start-channel]").await.click().await.unwrap();
    let link_input = usable(browser, "[data-testid=share-link]").await;
    let mut link = String::new();
    while link.is_empty() {
        link = link_input.prop("value").await.unwrap().unwrap_or_default();
    }
    link
}

async fn usable(browser: &fantoccini::Client, css: &str) -> fantoccini::elements::Element {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(element) = browser.find(Locator::Css(css)).await {
            if element.is_displayed().await.unwrap_or(false) && element.is_enabled().await.unwrap_or(false) {
                return element;
            }
        }
        assert!(Instant::now() < deadline, "{css} never became usable");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn say(browser: &fantoccini::Client, text: &str) {
    let input = usable(browser, "[data-testid=message-input]").await;
    input.send_keys(&format!("{text}\u{E007}")).await.unwrap(); // U+E007: WebDriver's Enter key
}

async fn screenshot(browser: &fantoccini::Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/browser-test");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), browser.screenshot().await.unwrap()).unwrap();
}

/// Skipped on a Citus cluster for the browser tests' timing, not the cluster's: with a cluster's
/// longer send path on this shared machine, the page's input ran the three messages typed at once
/// together ("onetwothree"), or showed the last late; and the edits test read its own message on
/// A's page as soon as B showed it, before A's own page had it. The page's and the test's races.
const NOT_ON_A_CLUSTER: &str = "the browser tests' timing assumes one node's latency";

#[tokio::test(flavor = "multi_thread")]
async fn two_people_chat_end_to_end_encrypted() {
    if skip_on_citus(NOT_ON_A_CLUSTER).await {
        return;
    }
    let gateway = Gateway::start().await;
    let driver = Driver::start().await;
    let a = driver.browser("a").await;
    let b = driver.browser("b").await;

    // A starts a channel and shares the link.
    a.goto(&format!("{}/", gateway.base)).await.unwrap();
    let link = start_channel(&a).await;
    let (_, fragment) = link.split_once('#').expect("the key rides in the fragment");
    let (channel, key) = fragment.rsplit_once('/').unwrap();
    assert!(!key.is_empty());

    // B opens it and joins.
    b.goto(&link).await.unwrap();
    wait_connected(&b).await;
    wait_connected(&a).await;

    // Each sees the other's messages within a second, in order, exactly once.
    say(&a, "hello from A").await;
    let lag =
        until_shown(&b, Duration::from_secs(1), |m| texts(m).contains(&"hello from A".to_string())).await;
    println!("B saw A's message after {lag:?}");
    say(&b, "hi from B").await;
    let lag = until_shown(&a, Duration::from_secs(1), |m| texts(m).contains(&"hi from B".to_string())).await;
    println!("A saw B's message after {lag:?}");
    for text in ["one", "two", "three"] {
        say(&a, text).await;
    }
    let expected = ["hello from A", "hi from B", "one", "two", "three"].map(String::from).to_vec();
    for browser in [&a, &b] {
        until_shown(browser, Duration::from_secs(2), |m| texts(m) == expected).await;
        let messages = shown(browser).await;
        let seqs: Vec<i64> = messages.iter().map(|(seq, _, _)| *seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, each once: {seqs:?}");
        assert!(
            messages.iter().any(|(_, kind, text)| kind == "system" && text.ends_with("joined")),
            "{messages:?}"
        );
    }
    // A burst typed faster than a send takes: each Enter is a message of its own, in order (the
    // page once ignored Enter while a send was on its way, leaving "five" and "six" unsent).
    let input = usable(&b, "[data-testid=message-input]").await;
    input.send_keys("four\u{E007}five\u{E007}six\u{E007}").await.unwrap();
    let burst = ["four", "five", "six"].map(String::from);
    for browser in [&a, &b] {
        until_shown(browser, Duration::from_secs(2), |m| texts(m).ends_with(&burst)).await;
    }
    let expected: Vec<String> = expected.into_iter().chain(burst).collect();
    let members = text_of(&a, "members").await;
    assert_eq!(members.lines().filter(|l| !l.trim().is_empty()).count(), 2, "{members}");
    screenshot(&a, "a").await;
    screenshot(&b, "b").await;

    // B reloads: the same history, once.
    b.refresh().await.unwrap();
    wait_connected(&b).await;
    until_shown(&b, Duration::from_secs(5), |m| texts(m) == expected).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(texts(&shown(&b).await), expected, "nothing shown twice after a reload");

    // The server only ever saw ciphertext.
    let db = admin().await;
    let stored: Vec<Value> = db
        .query("SELECT payload::text FROM hatchat.messages WHERE channel_id = $1 AND from_user_id <> '00000000-0000-0000-0000-000000000000'", &[&channel])
        .await
        .unwrap()
        .iter()
        .map(|row| serde_json::from_str(row.get::<_, &str>(0)).unwrap())
        .collect();
    assert_eq!(stored.len(), expected.len(), "each message stored once");
    for payload in &stored {
        let text = payload.to_string();
        assert!(payload["ct"].is_string() && payload["iv"].is_string(), "{text}");
        for plain in &expected {
            assert!(!text.contains(plain.as_str()), "plaintext {plain:?} in {text}");
        }
    }

    // Someone with a wrong key sees that the messages do not decrypt (rather than nothing).
    let c = driver.browser("c").await;
    let wrong_key = match key.strip_prefix('A') {
        Some(rest) => format!("B{rest}"),
        None => format!("A{}", &key[1..]),
    };
    c.goto(&format!("{}/#{channel}/{wrong_key}", gateway.base)).await.unwrap();
    wait_connected(&c).await;
    until_shown(&c, Duration::from_secs(5), |m| {
        m.iter().filter(|(_, kind, text)| kind == "undecryptable" && text.contains("cannot decrypt")).count()
            == expected.len()
    })
    .await;
    screenshot(&c, "wrong-key").await;

    for browser in [a, b, c] {
        browser.close().await.unwrap();
    }
}

/// The button `css` (`.edit`, `.delete`, `.react`) of the message shown with `seq`.
async fn message_button(browser: &fantoccini::Client, seq: i64, css: &str) -> fantoccini::elements::Element {
    usable(browser, &format!("[data-seq=\"{seq}\"] .actions {css}")).await
}

/// Polls (with a deadline) until `sql` with `channel` gives `expected`.
async fn until_row(sql: &str, channel: &str, expected: i64) {
    let db = admin().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value: i64 = db.query_one(sql, &[&channel]).await.unwrap().get(0);
        if value == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {value}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_deletes_reactions_and_unread_counts_in_the_browser() {
    if skip_on_citus(NOT_ON_A_CLUSTER).await {
        return;
    }
    let gateway = Gateway::start().await;
    let driver = Driver::start().await;
    let a = driver.browser("chat-a").await;
    let b = driver.browser("chat-b").await;
    a.goto(&format!("{}/", gateway.base)).await.unwrap();
    let link = start_channel(&a).await;
    let channel = link.split_once('#').unwrap().1.rsplit_once('/').unwrap().0.to_string();
    b.goto(&link).await.unwrap();
    wait_connected(&b).await;
    wait_connected(&a).await;

    say(&a, "lunch at 11?").await;
    until_shown(&b, Duration::from_secs(2), |m| texts(m) == ["lunch at 11?"]).await;
    let seq = shown(&a).await.iter().find(|(_, kind, _)| kind == "text").unwrap().0;

    // A edits (the new text is encrypted), B reacts, both see both.
    message_button(&a, seq, ".edit").await.click().await.unwrap();
    a.send_alert_text("lunch at 12?").await.unwrap();
    a.accept_alert().await.unwrap();
    until_shown(&b, Duration::from_secs(2), |m| texts(m) == ["lunch at 12?"]).await;
    message_button(&b, seq, ".react").await.click().await.unwrap();
    let reactions = format!("[data-seq=\"{seq}\"] .reactions");
    for browser in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(2);
        while browser.find(Locator::Css(&reactions)).await.unwrap().text().await.unwrap() != "👍 1" {
            assert!(Instant::now() < deadline, "the reaction never showed");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    screenshot(&b, "chat-edit-react").await;

    // A deletes it: gone for B too, and from the server's table.
    message_button(&a, seq, ".delete").await.click().await.unwrap();
    a.accept_alert().await.unwrap();
    until_shown(&b, Duration::from_secs(2), |m| m.iter().any(|(s, kind, _)| *s == seq && kind == "deleted"))
        .await;
    let erased = "SELECT count(*) FROM hatchat.messages WHERE channel_id = $1 AND payload = 'null'::jsonb";
    until_row(erased, &channel, 3).await; // the message, its edit, the delete event

    // B has read everything (marked while reading); away from the channel, a new message is unread.
    let bobs_read = "SELECT (c.last_seq - m.read_seq)::bigint FROM hatchat.members m \
                     JOIN hatchat.channels c ON c.id = m.channel_id \
                     WHERE m.channel_id = $1 AND m.user_id <> c.owner_id";
    until_row(bobs_read, &channel, 0).await;
    usable(&b, "#back").await.click().await.unwrap();
    say(&a, "are you there?").await;
    until_row(bobs_read, &channel, 1).await;
    b.refresh().await.unwrap();
    let badge = usable(&b, "[data-testid=unread]").await;
    assert_eq!(badge.text().await.unwrap().trim(), "1 unread");
    screenshot(&b, "chat-unread").await;
    for browser in [a, b] {
        browser.close().await.unwrap();
    }
}

/// The names on a page's presence line ("Here now: alice, you"); none while it shows nothing.
async fn here(browser: &fantoccini::Client) -> Vec<String> {
    let script = "const line = document.querySelector('[data-testid=presence]'); \
                  return line.hidden ? [] : line.textContent.replace(/^Here now: /, '').split(', ')";
    serde_json::from_value(browser.execute(script, vec![]).await.unwrap()).unwrap()
}

/// A page's typing line ("alice is typing…"), '' when nobody is.
async fn typing_line(browser: &fantoccini::Client) -> String {
    let script = "return document.querySelector('[data-testid=typing]').textContent";
    browser.execute(script, vec![]).await.unwrap().as_str().unwrap().to_string()
}

/// Waits until the page's presence line holds (`present`) or lacks `name`, at most `within`.
async fn until_here(browser: &fantoccini::Client, name: &str, present: bool, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let names = here(browser).await;
        if names.iter().any(|n| n == name) == present {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "{name} here: {present} not shown within {within:?}: {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the page's typing line is `expected`, at most `within`; returns the wait.
async fn until_typing(browser: &fantoccini::Client, expected: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let line = typing_line(browser).await;
        if line == expected {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "typing line {expected:?} not shown within {within:?}: {line:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn presence_and_typing_between_two_pages() {
    if skip_on_citus(NOT_ON_A_CLUSTER).await {
        return;
    }
    let gateway = Gateway::start().await;
    let driver = Driver::start().await;
    let alice = driver.browser("presence-alice").await;
    let bob = driver.browser("presence-bob").await;
    alice.goto(&format!("{}/", gateway.base)).await.unwrap();
    let link = start_channel(&alice).await;
    bob.goto(&link).await.unwrap();
    wait_connected(&bob).await;
    wait_connected(&alice).await;
    let alice_name = text_of(&alice, "username").await;
    let bob_name = text_of(&bob, "username").await;

    // Bob's page lists Alice as here (from GET /presence when his stream opened); Alice's lists Bob
    // (a join event on her open stream).
    let lag = until_here(&bob, &alice_name, true, Duration::from_secs(5)).await;
    println!("Bob's page showed Alice here after {lag:?}");
    let lag = until_here(&alice, &bob_name, true, Duration::from_secs(5)).await;
    println!("Alice's page showed Bob here after {lag:?}");

    // Alice types without sending: Bob's page says so within a few seconds, hers never does.
    let typing = format!("{alice_name} is typing…");
    let input = usable(&alice, "[data-testid=message-input]").await;
    input.send_keys("hel").await.unwrap();
    let last_key = Instant::now();
    let lag = until_typing(&bob, &typing, Duration::from_secs(3)).await;
    println!("Bob's page showed Alice typing after {lag:?}");
    screenshot(&bob, "presence-typing").await;
    assert_eq!(typing_line(&alice).await, "", "nobody is told they type themselves");
    // She stops: the line goes when the typing ends, 6 s after her keystroke.
    until_typing(&bob, "", Duration::from_secs(8)).await;
    let shown = last_key.elapsed();
    println!("Alice's typing went from Bob's page {shown:?} after her last keystroke");
    assert!(shown > Duration::from_secs(4) && shown < Duration::from_millis(7500), "{shown:?}");

    // Typing on and on (a key a second for 8 s): the page tells again before the 6 s end, so the
    // line stays; her message ends it at once.
    input.send_keys("l").await.unwrap();
    until_typing(&bob, &typing, Duration::from_secs(3)).await;
    for key in "o there".chars() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        input.send_keys(&key.to_string()).await.unwrap();
        assert_eq!(typing_line(&bob).await, typing, "the line stays while she types");
    }
    input.send_keys("\u{E007}").await.unwrap();
    until_shown(&bob, Duration::from_secs(2), |m| texts(m) == ["hello there"]).await;
    until_typing(&bob, "", Duration::from_secs(1)).await;

    // Alice goes to another page: hers closes its stream even if kept in the back/forward cache (it
    // held it open, so she stayed here for a minute), and Bob's drops her once she has been gone 5 s.
    alice.goto("about:blank").await.unwrap();
    let gone = Instant::now();
    until_here(&bob, &alice_name, false, Duration::from_secs(10)).await;
    println!("Bob's page dropped Alice {:?} after she left", gone.elapsed());
    screenshot(&bob, "presence-left").await;
    // She comes back (from the cache, or loaded again): her page opens its stream, she is here.
    alice.back().await.unwrap();
    wait_connected(&alice).await;
    until_here(&bob, &alice_name, true, Duration::from_secs(5)).await;
    for browser in [alice, bob] {
        browser.close().await.unwrap();
    }
}
