//! The memory allocator of every program built on this crate (`lantern`, and the tests'
//! `lantern-under-test`): mimalloc.
//!
//! With glibc's allocator, about a quarter of `lantern replay`'s time went to `malloc` and
//! `free`, much of it waiting on arena locks: the replay's workers allocate the events its
//! applying thread frees. mimalloc frees another thread's memory without a lock.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Option numbers from mimalloc's `mi_option_t` (include/mimalloc.h of the sources that
// libmimalloc-sys builds); libmimalloc-sys names only some of them.
#[cfg(target_os = "linux")]
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
#[cfg(target_os = "linux")]
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
#[cfg(target_os = "linux")]
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Holds resident memory to what is in use, for the flagger's memory held per call. By
/// default mimalloc commits its first 1 GiB arena up front where the system overcommits, and
/// gives freed pages back a second late: an idle `lantern run` then held about 30 MiB more than
/// with glibc, and start-up's temporary buffers stayed resident (112-123 bytes held per call,
/// against 100 allowed). Commit on demand and give freed pages back after 10 ms instead: at once
/// (0 ms) held no less and cost the replay about a tenth more time in `madvise`.
///
/// The arena is made by the first allocation, before `main`, so this runs as a constructor of
/// the program, as mimalloc's own environment variables would. Linux only (the section is
/// ELF's); elsewhere mimalloc keeps its defaults.
#[cfg(target_os = "linux")]
extern "C" fn tune() {
    // SAFETY: `mi_option_set` only stores an option's value, and both options exist in the
    // sources built; it allocates nothing.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS);
    }
}

#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static TUNE: extern "C" fn() = tune;

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn mimalloc_commits_on_demand_and_purges_soon_from_the_first_allocation() {
        // SAFETY: reading an option's value has no preconditions.
        let (eager, delay) = unsafe { (libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT), libmimalloc_sys::mi_option_get(PURGE_DELAY)) };
        assert_eq!((eager, delay), (0, PURGE_DELAY_MS), "the constructor set both options");
    }
}
