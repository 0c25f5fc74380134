//! Null-provider datapath throughput, one core, 64-byte IPv4/UDP: traffic
//! source → IPoIB header → neighbour/MGID lookup → post burst → poll →
//! decapsulate → free, stats per burst. Criterion reports elements/s = pps.
//! `benches/instructions_per_packet.sh` counts the same loop's instructions.

#[path = "../examples/datapath_pps/rig.rs"]
mod rig;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Packets per iteration: a whole number of the rig's stats-check periods.
const PACKETS: u64 = 64 * 1024;

fn datapath(c: &mut Criterion) {
    let mut g = c.benchmark_group("datapath_null_64B");
    g.throughput(Throughput::Elements(PACKETS));
    for dest in [rig::Dest::Unicast, rig::Dest::Multicast, rig::Dest::Mixed] {
        let mut r = rig::Rig::new(dest);
        r.warm_up(100_000);
        g.bench_function(dest.name(), |b| b.iter(|| r.run(PACKETS)));
    }
    g.finish();
}

criterion_group!(benches, datapath);
criterion_main!(benches);
