//! tidekv's native benchmarks against the stores a Rust user would pick instead, all peers in one
//! process and one run, so the report can state ratios on a noisy, shared machine.
//!
//! Run through `scripts/bench.sh` (which also writes BENCHMARKS.md). Environment:
//! - `TIDEKV_BENCH_QUICK=1`: a reduced run that only proves everything works (CI).
//! - `TIDEKV_BENCH_OUT=path`: where to write this binary's own results (JSON); criterion writes
//!   its estimates under `$CRITERION_HOME`.
//! - `TIDEKV_BENCH_GROUPS=point,tick,evict,reclaim,memory,persist,reopen`: run only these groups.
//!
//! This is a benchmark, not a test: nothing here asserts a time.

mod alloc_count;
mod evict;
mod expiry;
mod memory;
mod peers;
mod persist;
mod point;
mod profile;
mod results;

use std::time::Duration;

use criterion::Criterion;

#[global_allocator]
static ALLOC: alloc_count::Counting = alloc_count::Counting;

/// How big the run is.
pub struct Scale {
    pub quick: bool,
    /// Keys preloaded for the point-operation benches.
    pub point_keys: usize,
    /// Keys for the expiry, memory, persistence and reopen benches (1M in a full run).
    pub big: usize,
}

fn main() {
    if let Ok(spec) = std::env::var("TIDEKV_BENCH_REOPEN") {
        // A child process of the reopen group: one open, timed, then exit.
        persist::open_one(&spec);
        return;
    }
    let quick = std::env::var("TIDEKV_BENCH_QUICK").is_ok_and(|v| v == "1");
    let scale = if quick {
        Scale {
            quick,
            point_keys: 10_000,
            big: 50_000,
        }
    } else {
        Scale {
            quick,
            point_keys: 100_000,
            big: 1_000_000,
        }
    };
    let groups = std::env::var("TIDEKV_BENCH_GROUPS")
        .unwrap_or_else(|_| "point,tick,reclaim,memory,persist,reopen".into());
    let on = |g: &str| groups.split(',').any(|x| x.trim() == g);
    let out = std::env::var("TIDEKV_BENCH_OUT").unwrap_or_else(|_| "native-results.json".into());

    let mut c = if quick {
        Criterion::default()
            .sample_size(10)
            .warm_up_time(Duration::from_millis(50))
            .measurement_time(Duration::from_millis(100))
    } else {
        Criterion::default()
            .sample_size(50)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
    }
    .without_plots();

    if let Some(which) = groups.split(',').find(|g| g.starts_with("profile_")) {
        profile::run(which);
        return;
    }
    results::record("run", "scale_big", "-", scale.big as f64, "keys");
    results::record(
        "run",
        "scale_point_keys",
        "-",
        scale.point_keys as f64,
        "keys",
    );
    // Write what we have after each group, so a crash late in the run keeps earlier results.
    if on("memory") {
        memory::bench(&scale);
        results::write(&out);
    }
    if on("point") {
        point::bench(&mut c, &scale);
    }
    if on("tick") {
        expiry::bench_tick(&mut c, &scale);
    }
    if on("evict") {
        evict::bench(&mut c, &scale);
    }
    if on("reclaim") {
        expiry::bench_reclaim(&scale);
        results::write(&out);
    }
    if on("persist") || on("reopen") {
        persist::bench(&scale, on("persist"), on("reopen"));
    }
    results::write(&out);
    c.final_summary();
}
