//! Datapath throughput on one core: null provider in loopback mode, 64-byte
//! IPv4/UDP. Prints `name: value` lines; `mpps` last.
//!
//!     datapath_pps [--packets N] [--warmup N] [--dest unicast|multicast|mixed]
//!                  [--mode generate|forward]
//!
//! `generate`: traffic sources allocate and fill every packet, RX frees it.
//! `forward`: a fixed set of packets goes round TX → loopback → RX → TX
//! (testpmd io forwarding): the datapath alone, no alloc, free or copy.
//!
//! `benches/instructions_per_packet.sh` runs it under callgrind with two
//! packet counts; the difference cancels start-up and warm-up.

mod rig;

use rig::{Dest, Mode, Rig};
use std::time::Instant;

fn main() {
    let mut packets: u64 = 20_000_000;
    let mut warmup: u64 = 100_000;
    let mut dest = Dest::Unicast;
    let mut mode = Mode::Generate;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| fail(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--packets" => {
                packets = value()
                    .parse()
                    .unwrap_or_else(|_| fail("--packets: not a number"))
            }
            "--warmup" => {
                warmup = value()
                    .parse()
                    .unwrap_or_else(|_| fail("--warmup: not a number"))
            }
            "--dest" => {
                dest = Dest::parse(&value())
                    .unwrap_or_else(|| fail("--dest: unicast, multicast or mixed"))
            }
            "--mode" => {
                mode = Mode::parse(&value()).unwrap_or_else(|| fail("--mode: generate or forward"))
            }
            "-h" | "--help" => {
                println!("usage: datapath_pps [--packets N] [--warmup N] [--dest unicast|multicast|mixed] [--mode generate|forward]");
                return;
            }
            _ => fail(&format!("unknown argument {a}")),
        }
    }
    let mut rig = Rig::with_mode(dest, mode);
    rig.warm_up(warmup);
    let before = rig.snapshot();
    let t = Instant::now();
    let sent = rig.run(packets);
    let secs = t.elapsed().as_secs_f64();
    let after = rig.snapshot();
    let received = after.rx_packets - before.rx_packets;
    let drops = after.total_drops() - before.total_drops();
    if drops != 0 || received + 512 < sent {
        fail(&format!(
            "datapath lost packets: sent {sent}, received {received}, drops {drops}"
        ));
    }
    println!("mode: {}", mode.name());
    println!("dest: {}", dest.name());
    println!("packet_size: {}", rig::PACKET_SIZE);
    println!("packets: {sent}");
    println!("seconds: {secs:.3}");
    println!("ns_per_packet: {:.2}", secs * 1e9 / sent as f64);
    println!("mpps: {:.2}", sent as f64 / secs / 1e6);
}

fn fail(msg: &str) -> ! {
    eprintln!("datapath_pps: {msg}");
    std::process::exit(2);
}
