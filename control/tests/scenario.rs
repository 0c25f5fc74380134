//! The fault scenario the daemon runs with `--sa-faults SPEC --seed N`.
#![cfg(not(feature = "shuttle"))]

use ipoib_control::{run_fault_scenario, FaultSpec};

#[test]
fn documented_fault_mix_stays_balanced_and_never_hangs() {
    let spec =
        FaultSpec::parse("delay=0-5ms,fail=0.1,reset=0.05,noanswer=0.02,early=0.5,restart=0.01")
            .unwrap();
    for seed in [1, 2] {
        let s = run_fault_scenario(&spec, seed, 4);
        println!("{s}");
        assert!(s.is_ok(), "seed {seed}: {s}");
        assert_eq!(s.rounds, 4);
        assert!(s.joins >= 4 * 7, "{s}");
        assert!(s.leaves > 0 && s.flushes >= 8, "{s}");
        let line = s.to_string();
        assert!(line.contains("unbalanced=0 hung_flushes=0"), "{line}");
    }
}

#[test]
fn no_faults_every_join_is_left() {
    let s = run_fault_scenario(&FaultSpec::none(), 7, 3);
    assert!(s.is_ok(), "{s}");
    assert_eq!(s.failed, 0);
    assert_eq!(s.timed_out, 0);
    // Every successful join was left exactly once (no cancels without faults).
    assert_eq!(s.joins, s.leaves, "{s}");
    assert!(!s.last_groups.is_empty());
    let table = s.groups_table().to_string();
    assert!(table.starts_with("MGID"), "{table}");
    assert!(
        table.contains("(bcast)") && table.contains("joined"),
        "{table}"
    );
}

#[test]
fn heavy_faults_with_noanswer_time_out_instead_of_hanging() {
    let spec =
        FaultSpec::parse("delay=0-2ms,fail=0.2,reset=0.1,noanswer=0.2,early=0.3,restart=0.05")
            .unwrap();
    let s = run_fault_scenario(&spec, 42, 3);
    assert!(s.is_ok(), "{s}");
    assert!(s.timed_out > 0, "noanswer faults must be timed out: {s}");
}
