//! Lcores: pinned busy-poll loops. Each lcore serves a fixed set of
//! interfaces (RX burst, then TX burst) and the traffic sources that feed
//! them, with one mempool cache of its own.

mod iface;
mod mcast_tx;
mod neigh;
mod runner;
mod source;
mod tun;

pub use iface::{CtrlChannels, CtrlDest, CtrlSend, Iface, IfaceConfig, IfaceWiring};
pub use mcast_tx::{McastTx, PENDING_PER_GROUP};
pub use neigh::{NeighEntry, NeighTable};
pub use runner::{spawn_lcores, LcoreHandle, Pinning};
pub use source::{build_udp_packet, FlowSpec, RateControl, Source, TrafficSource};
pub use tun::{TunCounter, TunPort, TunStats};

use crate::mem::LcoreCache;
use crate::pktgen::Sink;
use crate::provider::Provider;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Lcore<P: Provider> {
    pub id: usize,
    ifaces: Vec<Iface<P>>,
    sources: Vec<Source>,
    sinks: Vec<Sink>,
    /// TUN devices of this lcore's interfaces; usually none.
    tuns: Vec<TunPort>,
    cache: LcoreCache,
}

impl<P: Provider> Lcore<P> {
    pub fn new(id: usize, cache: LcoreCache) -> Self {
        Lcore {
            id,
            ifaces: Vec::new(),
            sources: Vec::new(),
            sinks: Vec::new(),
            tuns: Vec::new(),
            cache,
        }
    }
    pub fn add_iface(&mut self, iface: Iface<P>) {
        self.ifaces.push(iface);
    }
    pub fn add_source(&mut self, s: impl Into<Source>) {
        self.sources.push(s.into());
    }
    /// A pktgen sink, polled after the interfaces (it drains one's RX ring).
    pub fn add_sink(&mut self, s: Sink) {
        self.sinks.push(s);
    }
    /// A TUN device, polled before the interfaces: what they received last
    /// pass is written to it, and what it holds goes to their TX rings.
    pub fn add_tun(&mut self, t: TunPort) {
        self.tuns.push(t);
    }
    pub fn sinks(&self) -> &[Sink] {
        &self.sinks
    }
    pub fn sinks_mut(&mut self) -> &mut [Sink] {
        &mut self.sinks
    }
    pub fn ifaces(&self) -> &[Iface<P>] {
        &self.ifaces
    }
    pub fn ifaces_mut(&mut self) -> &mut [Iface<P>] {
        &mut self.ifaces
    }
    pub fn cache_mut(&mut self) -> &mut LcoreCache {
        &mut self.cache
    }

    /// One pass: sources produce, then every interface does RX and TX.
    /// Returns the packets moved, so callers can tell idle from busy.
    #[inline]
    pub fn poll_once(&mut self) -> usize {
        let mut work = 0;
        for t in &mut self.tuns {
            work += t.poll(&mut self.cache);
        }
        for s in &mut self.sources {
            work += s.produce(&mut self.cache);
        }
        for i in &mut self.ifaces {
            work += i.rx_burst(&mut self.cache);
            work += i.tx_burst(&mut self.cache);
        }
        for s in &mut self.sinks {
            work += s.poll(&mut self.cache);
        }
        work
    }

    /// Busy-polls until `stop` is set, then stops producing and drains: what
    /// is in flight is delivered or freed, never leaked.
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.poll_once();
        }
        self.sources.clear();
        // Deliver what is still in rings; a few idle passes in a row mean done.
        let mut idle = 0;
        while idle < 4 {
            let mut work = 0;
            for i in &mut self.ifaces {
                work += i.rx_burst(&mut self.cache) + i.tx_burst(&mut self.cache);
            }
            // Received packets still reach the host; nothing new is read.
            for t in &mut self.tuns {
                work += t.write_burst(&mut self.cache);
            }
            for s in &mut self.sinks {
                work += s.poll(&mut self.cache);
            }
            idle = if work == 0 { idle + 1 } else { 0 };
        }
    }

    /// Frees everything the lcore's interfaces still hold. Call after every
    /// lcore has stopped, so nothing is in flight between them.
    pub fn drain(&mut self) {
        for i in &mut self.ifaces {
            i.drain(&mut self.cache);
        }
        for t in &mut self.tuns {
            t.drain(&mut self.cache);
        }
    }
}
