//! The broadcaster's memory allocator: jemalloc, handing the pages it frees back to the
//! kernel within about a second.
//!
//! Tens of thousands of idle WebSocket connections are the broadcaster's normal load, and
//! what each one keeps resident is what limits a replica. Setting up a connection allocates
//! and frees far more than it keeps (the upgrade request, the Redis reads, the first frames);
//! glibc malloc and jemalloc's defaults keep those freed pages resident (jemalloc for 10 s),
//! so a replica that just took a wave of clients holds a few KiB per connection it no longer
//! uses. `cargo xtask bench broadcaster` with 10,000 clients: 24.9 KiB per idle connection
//! with glibc, 24.2-24.7 with default jemalloc, 19.0 with this (docs/benchmarks.md).
//!
//! Only a binary can choose the global allocator: the broadcaster's `main` (and the benchmark
//! that measures it) declare
//! `#[global_allocator] static ALLOCATOR: stats_broadcaster::Allocator = stats_broadcaster::Allocator;`
//! and call [`release_freed_pages_promptly`] first thing.

use tikv_jemalloc_ctl::{Access, AsName};

pub use tikv_jemallocator::Jemalloc as Allocator;

/// How long jemalloc keeps freed ("dirty") pages for reuse before purging them, in
/// milliseconds: 1 s instead of jemalloc's 10 s. 0 measured the same per connection but
/// purges synchronously on the allocating thread, in the middle of a delivery.
const DIRTY_DECAY_MS: isize = 1_000;

/// Purges freed pages after [`DIRTY_DECAY_MS`], from jemalloc's background threads (so
/// the workers never stop to purge, and idle arenas are purged too: without background
/// threads jemalloc only purges when the arena allocates again). Call before the runtime
/// starts its threads; arenas created later inherit the setting.
pub fn release_freed_pages_promptly() -> anyhow::Result<()> {
    let jemalloc = |error: tikv_jemalloc_ctl::Error| anyhow::anyhow!("jemalloc settings: {error}");
    b"arenas.dirty_decay_ms\0"
        .name()
        .write(DIRTY_DECAY_MS)
        .map_err(jemalloc)?;
    // The arenas that exist already (at least the first) keep their own setting.
    let arenas = tikv_jemalloc_ctl::arenas::narenas::read().map_err(jemalloc)?;
    for arena in 0..arenas {
        // Arenas not yet initialised refuse the write; they inherit the default above.
        let _ = format!("arena.{arena}.dirty_decay_ms\0")
            .as_str()
            .name()
            .write(DIRTY_DECAY_MS);
    }
    tikv_jemalloc_ctl::background_thread::write(true).map_err(jemalloc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decay_and_the_background_threads_are_set() -> anyhow::Result<()> {
        let jemalloc = |error: tikv_jemalloc_ctl::Error| anyhow::anyhow!("{error}");
        release_freed_pages_promptly()?;
        let decay: isize = b"arenas.dirty_decay_ms\0".name().read().map_err(jemalloc)?;
        assert_eq!(decay, DIRTY_DECAY_MS);
        let arena_zero: isize = b"arena.0.dirty_decay_ms\0".name().read().map_err(jemalloc)?;
        assert_eq!(arena_zero, DIRTY_DECAY_MS);
        assert!(tikv_jemalloc_ctl::background_thread::read().map_err(jemalloc)?);
        Ok(())
    }
}
