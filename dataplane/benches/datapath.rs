//! Null-provider datapath throughput, one core, 64-byte IPv4/UDP: TX ring →
//! IPoIB header → neighbour/MGID lookup → post burst → poll → decapsulate,
//! stats per burst; `forward` recycles a fixed set of packets (the datapath
//! alone), `generate` allocates, fills and frees every packet as well.
//! Criterion reports elements/s = packets/s.
//! `benches/instructions_per_packet.sh` counts the same loop's instructions.

#[path = "../examples/datapath_pps/rig.rs"]
mod rig;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Packets per iteration: a whole number of the rig's stats-check periods.
const PACKETS: u64 = 64 * 1024;

fn datapath(c: &mut Criterion) {
    let mut g = c.benchmark_group("datapath_null_64B");
    g.throughput(Throughput::Elements(PACKETS));
    for mode in [rig::Mode::Forward, rig::Mode::Generate] {
        for dest in [rig::Dest::Unicast, rig::Dest::Multicast, rig::Dest::Mixed] {
            let mut r = rig::Rig::with_mode(dest, mode);
            r.warm_up(100_000);
            let name = format!("{}_{}", mode.name(), dest.name());
            g.bench_function(name, |b| b.iter(|| r.run(PACKETS)));
        }
    }
    g.finish();
}

criterion_group!(benches, datapath);
criterion_main!(benches);
