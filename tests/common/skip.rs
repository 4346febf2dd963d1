//! A test that does not apply to a Citus cluster says so at its top, with the reason:
//!
//! ```ignore
//! if skip_on_citus("why this test does not apply to a cluster") { return; }
//! ```
//!
//! It is skipped only where the test database really has the `citus` extension
//! (scripts/test-citus.sh), and says so on the terminal, past the test harness's capture of
//! output, so a skip is never silent. Shared by the SQL suites (tests/common) and the HTTP suites
//! (gateway/tests/support), which each ask their own connection.

use std::io::Write;

/// Whether the connected database is a Citus cluster's.
pub const CITUS_INSTALLED: &str = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')";

/// `on_citus` passed through, after saying on the terminal that the running test is skipped, and
/// why, when it is.
pub fn announce_skip(on_citus: bool, reason: &str) -> bool {
    if on_citus {
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("a test");
        // Straight to the terminal: `eprintln!` of a passing test is captured, and never shown.
        let _ = writeln!(std::io::stderr(), "SKIPPED on Citus: {test}: {reason}");
    }
    on_citus
}
