//! The gateway's allocator: jemalloc. Its background threads give back to the system the pages a
//! closed burst of streams freed (after its decay time, 10 s), with nothing to call; and it says
//! what it holds, which /metrics serves. glibc's allocator keeps freed pages in its arenas until
//! told to trim them, and cannot say how much of what it keeps is resident.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// What the allocator holds, in bytes: the pages of its own that are resident, and what the
/// gateway has allocated and not freed.
pub struct Held {
    pub resident: u64,
    pub allocated: u64,
}

/// The allocator's figures now (None if it would not say).
pub fn held() -> Option<Held> {
    use tikv_jemalloc_ctl::{epoch, stats};
    // The statistics are a snapshot taken at each epoch.
    epoch::advance().ok()?;
    let resident = stats::resident::read().ok()? as u64;
    let allocated = stats::allocated::read().ok()? as u64;
    Some(Held { resident, allocated })
}
