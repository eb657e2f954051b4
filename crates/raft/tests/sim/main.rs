//! Deterministic simulation of whole clusters under faults.
//!
//! Each run is a pure function of its seed. A failure prints the scenario
//! and seed; replay it (with an event trace) via
//! `SKIFF_SIM_SEED=<seed> SKIFF_SIM_TRACE=1 cargo test -p skiff-raft --test sim <scenario>`.
//! `SKIFF_SIM_SEEDS=<n>` changes how many seeds each scenario runs; the
//! ignored `soak` test runs many more. Every seed's client history is
//! checked for linearizability (`skiff-linearizability`) besides the
//! per-step Raft safety invariants. The default seed counts keep the whole
//! file near two minutes in a debug build on a busy 2-core machine.

mod checker;
mod cluster;
mod kv;
mod rng;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use cluster::{Params, Sim, Stats};

fn seeds(default: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("SKIFF_SIM_SEED") {
        return vec![s.parse().expect("SKIFF_SIM_SEED must be a number")];
    }
    let n = std::env::var("SKIFF_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    let base = std::env::var("SKIFF_SIM_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0u64);
    (base..base + n).collect()
}

/// Run `scenario` for every seed; panic with a replay line on the first
/// failure (invariant violation, liveness failure or a panic inside Raft).
fn run(scenario: &str, default_seeds: u64, params: impl Fn() -> Params) -> Stats {
    let start = Instant::now();
    let mut total = Stats::default();
    let seeds = seeds(default_seeds);
    let (mut reads, mut commits, mut max_term) = (0, 0, 0);
    let (mut answered, mut timed_out) = (0, 0);
    for &seed in &seeds {
        let p = params();
        let res = catch_unwind(AssertUnwindSafe(|| {
            let mut sim = Sim::new(seed, p);
            let r = sim.run();
            (
                r,
                sim.stats.clone(),
                sim.chk.reads_served,
                sim.chk.committed_count(),
                sim.chk.max_term,
                (sim.clients.answered, sim.clients.timed_out),
            )
        }));
        let err = match res {
            Ok((Ok(()), st, r, c, t, ops)) => {
                answered += ops.0;
                timed_out += ops.1;
                total.crashes += st.crashes;
                total.torn += st.torn;
                total.snapshots_sent += st.snapshots_sent;
                total.conf_changes += st.conf_changes;
                total.leader_removals += st.leader_removals;
                total.elections += st.elections;
                total.ticks_to_recover = total.ticks_to_recover.max(st.ticks_to_recover);
                reads += r;
                commits += c;
                max_term = max_term.max(t);
                continue;
            }
            Ok((Err(e), ..)) => e,
            Err(p) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default(),
        };
        panic!(
            "simulation {scenario} failed at seed {seed}: {err}\n  replay: SKIFF_SIM_SEED={seed} SKIFF_SIM_TRACE=1 cargo test -p skiff-raft --test sim {scenario}"
        );
    }
    eprintln!(
        "{scenario}: {} seeds in {:.1?}; {commits} committed entries, {reads} reads checked, {answered} client ops answered and {timed_out} timed out (history linearizable), {} elections, {} crashes ({} torn), {} snapshots installed, {} conf changes ({} removing the leader), max term {max_term}, worst recovery {} ticks",
        seeds.len(),
        start.elapsed(),
        total.elections,
        total.crashes,
        total.torn,
        total.snapshots_sent,
        total.conf_changes,
        total.leader_removals,
        total.ticks_to_recover
    );
    total
}

#[test]
fn random_faults_3_nodes() {
    run("random_faults_3_nodes", 200, Params::default);
}

#[test]
fn random_faults_5_nodes() {
    run("random_faults_5_nodes", 150, || Params {
        voters: 5,
        ..Params::default()
    });
}

/// Frequent leader crashes with partial replication: the figure 8 pattern
/// (old-term entries on a majority, then overwritten) arises constantly.
#[test]
fn figure_8_leader_churn() {
    run("figure_8_leader_churn", 150, || Params {
        voters: 5,
        crash: 0.0,
        crash_leader: 0.05,
        restart: 0.2,
        torn: 0.5,
        drop: 0.15,
        propose: 0.8,
        // One entry per append: partial replication up to an old-term
        // entry (without the new leader's entry) becomes common.
        max_msg_size: 1,
        ..Params::default()
    });
}

#[test]
fn leader_partitioned_with_minority() {
    run("leader_partitioned_with_minority", 150, || Params {
        voters: 5,
        leader_minority: 0.03,
        partition: 0.0,
        heal: 0.03,
        crash: 0.002,
        crash_leader: 0.0,
        read: 0.2,
        ..Params::default()
    });
}

#[test]
fn membership_changes_during_partitions() {
    run("membership_changes_during_partitions", 200, || Params {
        voters: 3,
        spares: 3,
        conf_change: 0.05,
        partition: 0.02,
        leader_minority: 0.01,
        ..Params::default()
    });
}

/// Aggressive compaction and lagging nodes: followers constantly need
/// snapshots (in many small chunks) while new entries keep arriving.
#[test]
fn snapshots_while_entries_arrive() {
    run("snapshots_while_entries_arrive", 200, || Params {
        compact: 0.3,
        chunk_size: 8,
        partition: 0.03,
        propose: 0.9,
        crash: 0.01,
        ..Params::default()
    });
}

/// ReadIndex served from the leader's lease (check-quorum on, clock skew
/// off: leases assume clocks run at the same rate).
///
/// This scenario found stale lease reads (seed 100106, among others) when
/// the lease was "until check-quorum deposes us": see
/// `Raft::lease_valid` and `Raft::in_lease` for the fix.
#[test]
fn lease_reads_with_leader_isolation() {
    run("lease_reads_with_leader_isolation", 100, || Params {
        voters: 5,
        lease_reads: true,
        skew: 0.0,
        leader_minority: 0.03,
        heal: 0.03,
        read: 0.2,
        ..Params::default()
    });
}

/// The history check is not vacuous: serving reads from local state
/// without ReadIndex must be caught as non-linearizable within a few seeds
/// once leaders get isolated.
#[test]
fn stale_local_reads_are_caught() {
    let caught = (0..30).find(|&seed| {
        let mut sim = Sim::new(
            seed,
            Params {
                voters: 5,
                unsafe_local_reads: true,
                leader_minority: 0.05,
                heal: 0.02,
                read: 0.3,
                ..Params::default()
            },
        );
        matches!(sim.run(), Err(e) if e.contains("not linearizable"))
    });
    assert!(
        caught.is_some(),
        "30 seeds of stale local reads all passed the checker"
    );
    eprintln!("stale local reads caught at seed {caught:?}");
}

/// Many more seeds per scenario (default 2000 each, or `SKIFF_SIM_SEEDS`;
/// `SKIFF_SIM_BASE` shifts the seed range to explore new ground).
#[test]
#[ignore = "soak: SKIFF_SIM_SEEDS=<n> cargo test -p skiff-raft --test sim -- --ignored"]
fn soak() {
    let scenarios: [(&str, Params); 7] = [
        (
            "soak_lease_reads",
            Params {
                voters: 5,
                lease_reads: true,
                skew: 0.0,
                leader_minority: 0.03,
                heal: 0.03,
                read: 0.2,
                ..Params::default()
            },
        ),
        ("soak_3", Params::default()),
        (
            "soak_5",
            Params {
                voters: 5,
                ..Params::default()
            },
        ),
        (
            "soak_membership",
            Params {
                spares: 3,
                conf_change: 0.05,
                partition: 0.02,
                ..Params::default()
            },
        ),
        (
            "soak_snapshots",
            Params {
                compact: 0.3,
                chunk_size: 8,
                partition: 0.03,
                propose: 0.9,
                ..Params::default()
            },
        ),
        (
            "soak_churn",
            Params {
                voters: 5,
                crash_leader: 0.05,
                restart: 0.2,
                torn: 0.5,
                drop: 0.15,
                max_msg_size: 1,
                ..Params::default()
            },
        ),
        (
            "soak_minority",
            Params {
                voters: 5,
                leader_minority: 0.03,
                heal: 0.03,
                read: 0.2,
                ..Params::default()
            },
        ),
    ];
    for (name, p) in scenarios {
        run(name, 2000, || p.clone());
    }
}
