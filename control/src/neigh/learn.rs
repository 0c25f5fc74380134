//! Received ARP and ND: learning senders, answering for our addresses, and
//! the requests and announcements the cache sends.

use super::action::Action;
use super::addr::{solicited_node, ALL_NODES};
use super::cache::NeighCache;
use super::entry::{Entry, NeighState};
use super::frame::{parse_frame, FrameError, Inbound, NdMessage};
use ipoib_dataplane::wire::{ArpOperation, ArpRepr, HwAddr, NdRepr, NeighborFlags};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// How a received message may change an entry.
#[derive(Clone, Copy)]
struct Learn {
    /// A solicited answer: the neighbour is reachable.
    confirmed: bool,
    /// Create an entry if there is none (the sender asked us something).
    create: bool,
    /// May replace a different known address.
    override_: bool,
}

impl<T> NeighCache<T> {
    /// A frame the lcore classified as ARP or ND (IPoIB header included).
    /// Anything else is counted as invalid and ignored.
    pub fn on_frame(&mut self, frame: &[u8], now: Duration) -> Vec<Action<T>> {
        match parse_frame(frame) {
            Ok(Inbound::Arp(repr)) => self.on_arp(&repr, now),
            Ok(Inbound::Nd(msg)) => self.on_nd(&msg, now),
            Err(FrameError::NotNeighbour) => Vec::new(),
            Err(_) => {
                self.stats.invalid += 1;
                Vec::new()
            }
        }
    }

    pub fn on_arp(&mut self, repr: &ArpRepr, now: Duration) -> Vec<Action<T>> {
        let mut actions = Vec::new();
        if !self.up {
            return actions;
        }
        let sender = IpAddr::V4(repr.source_protocol_addr);
        if repr.source_hardware_addr == self.link.hwaddr {
            self.stats.ignored_own += 1;
            return actions;
        }
        if repr.source_hardware_addr.is_multicast() {
            self.stats.invalid += 1;
            return actions;
        }
        if self.is_own(sender) {
            self.stats.conflicts += 1;
            return actions;
        }
        let target = IpAddr::V4(repr.target_protocol_addr);
        let for_us = self.is_own(target);
        if !repr.source_protocol_addr.is_unspecified() {
            let learn = Learn {
                confirmed: repr.operation == ArpOperation::Reply && for_us,
                create: for_us,
                override_: true,
            };
            self.learn(sender, repr.source_hardware_addr, learn, now, &mut actions);
        }
        if repr.operation == ArpOperation::Request && for_us {
            self.stats.arp_replies_sent += 1;
            actions.push(Action::SendArpReply {
                dest: repr.source_hardware_addr,
                repr: repr.reply(self.link.hwaddr),
            });
        }
        actions
    }

    pub fn on_nd(&mut self, msg: &NdMessage, now: Duration) -> Vec<Action<T>> {
        let mut actions = Vec::new();
        if !self.up {
            return actions;
        }
        match msg.repr {
            NdRepr::NeighborSolicit {
                target_addr,
                source_lladdr,
            } => self.on_solicit(msg.src, target_addr, source_lladdr, now, &mut actions),
            NdRepr::NeighborAdvert {
                flags,
                target_addr,
                target_lladdr,
            } => self.on_advert(flags, target_addr, target_lladdr, now, &mut actions),
        }
        actions
    }

    fn on_solicit(
        &mut self,
        src: Ipv6Addr,
        target: Ipv6Addr,
        lladdr: Option<HwAddr>,
        now: Duration,
        actions: &mut Vec<Action<T>>,
    ) {
        if lladdr == Some(self.link.hwaddr) {
            self.stats.ignored_own += 1;
            return;
        }
        if lladdr.is_some_and(|hw| hw.is_multicast()) {
            self.stats.invalid += 1;
            return;
        }
        let sender = IpAddr::V6(src);
        if self.is_own(sender) {
            self.stats.conflicts += 1;
            return;
        }
        let for_us = self.is_own(IpAddr::V6(target));
        if let (false, Some(hw)) = (src.is_unspecified(), lladdr) {
            let learn = Learn {
                confirmed: false,
                create: for_us,
                override_: true,
            };
            self.learn(sender, hw, learn, now, actions);
        }
        if !for_us {
            return;
        }
        // Duplicate address detection probes are answered to all nodes.
        let (dst, dest, solicited) = if src.is_unspecified() {
            (ALL_NODES, self.link.ipv6_group(ALL_NODES), false)
        } else {
            let known = self.entries.get(&sender).and_then(|e| e.hwaddr);
            (src, lladdr.or(known), true)
        };
        let Some(dest) = dest else {
            return;
        };
        self.stats.na_sent += 1;
        actions.push(Action::SendNeighborAdvertisement {
            dest,
            msg: NdMessage {
                src: target,
                dst,
                repr: NdRepr::NeighborAdvert {
                    flags: NeighborFlags {
                        router: false,
                        solicited,
                        override_: true,
                    },
                    target_addr: target,
                    target_lladdr: Some(self.link.hwaddr),
                },
            },
        });
    }

    fn on_advert(
        &mut self,
        flags: NeighborFlags,
        target: Ipv6Addr,
        lladdr: Option<HwAddr>,
        now: Duration,
        actions: &mut Vec<Action<T>>,
    ) {
        if lladdr == Some(self.link.hwaddr) {
            self.stats.ignored_own += 1;
            return;
        }
        let ip = IpAddr::V6(target);
        if self.is_own(ip) {
            self.stats.conflicts += 1;
            return;
        }
        match lladdr {
            Some(hw) if !hw.is_multicast() => {
                let learn = Learn {
                    confirmed: flags.solicited,
                    create: false,
                    override_: flags.override_,
                };
                self.learn(ip, hw, learn, now, actions);
            }
            Some(_) => self.stats.invalid += 1,
            // No address: only a confirmation of the one we have.
            None => {
                if let Some(entry) = self.entries.get_mut(&ip) {
                    if flags.solicited && entry.hwaddr.is_some() {
                        entry.state = NeighState::Reachable;
                        entry.confirmed = now;
                    }
                }
            }
        }
    }

    /// Records that `ip` is at `hw`, releasing queued packets if it was
    /// being resolved.
    fn learn(
        &mut self,
        ip: IpAddr,
        hw: HwAddr,
        how: Learn,
        now: Duration,
        actions: &mut Vec<Action<T>>,
    ) {
        let fresh = if how.confirmed {
            NeighState::Reachable
        } else {
            NeighState::Stale
        };
        let Some(entry) = self.entries.get_mut(&ip) else {
            if how.create && self.entries.len() < self.cfg.max_entries {
                self.entries
                    .insert(ip, Entry::resolved(hw, how.confirmed, now));
                self.generation += 1;
                actions.push(Action::Resolved {
                    ip,
                    hwaddr: hw,
                    packets: Vec::new(),
                });
            }
            return;
        };
        match entry.hwaddr {
            None => {
                // Incomplete or failed: resolved now, whoever asked.
                if entry.state == NeighState::Incomplete {
                    self.stats.resolved += 1;
                }
                entry.state = fresh;
                entry.hwaddr = Some(hw);
                entry.attempts = 0;
                entry.confirmed = now;
                entry.deadline = now;
                let packets: Vec<T> = entry.queue.drain(..).collect();
                self.stats.released += packets.len() as u64;
                self.generation += 1;
                actions.push(Action::Resolved {
                    ip,
                    hwaddr: hw,
                    packets,
                });
            }
            Some(old) if old == hw => {
                if how.confirmed {
                    entry.state = NeighState::Reachable;
                    entry.confirmed = now;
                }
            }
            Some(old) if how.override_ => {
                entry.hwaddr = Some(hw);
                entry.state = fresh;
                entry.confirmed = now;
                self.generation += 1;
                actions.push(Action::Forget { ip, hwaddr: old });
                actions.push(Action::Resolved {
                    ip,
                    hwaddr: hw,
                    packets: Vec::new(),
                });
            }
            // A different address without override: doubt the one we have.
            Some(_) => entry.state = NeighState::Stale,
        }
    }

    /// A request for `ip`: to its group, or unicast to `unicast` to
    /// re-confirm a stale entry.
    pub(super) fn request(
        &mut self,
        ip: IpAddr,
        unicast: Option<HwAddr>,
        actions: &mut Vec<Action<T>>,
    ) {
        match ip {
            IpAddr::V4(target) => {
                let source = self.source_v4();
                self.stats.arp_requests_sent += 1;
                actions.push(Action::SendArpRequest {
                    dest: unicast.unwrap_or_else(|| self.link.broadcast()),
                    repr: ArpRepr::request(self.link.hwaddr, source, target),
                });
            }
            IpAddr::V6(target) => {
                let dst = if unicast.is_some() {
                    target
                } else {
                    solicited_node(target)
                };
                let Some(dest) = unicast.or_else(|| self.link.ipv6_group(dst)) else {
                    return;
                };
                self.stats.ns_sent += 1;
                actions.push(Action::SendNeighborSolicitation {
                    dest,
                    msg: NdMessage {
                        src: self.link.link_local(),
                        dst,
                        repr: NdRepr::NeighborSolicit {
                            target_addr: target,
                            source_lladdr: Some(self.link.hwaddr),
                        },
                    },
                });
            }
        }
    }

    /// Gratuitous ARP for an IPv4 address, unsolicited NA for an IPv6 one.
    pub(super) fn announce(&mut self, ip: IpAddr, actions: &mut Vec<Action<T>>) {
        match ip {
            IpAddr::V4(own) => {
                self.stats.gratuitous_sent += 1;
                actions.push(Action::SendGratuitousArp {
                    dest: self.link.broadcast(),
                    repr: ArpRepr {
                        operation: ArpOperation::Request,
                        source_hardware_addr: self.link.hwaddr,
                        source_protocol_addr: own,
                        target_hardware_addr: HwAddr::default(),
                        target_protocol_addr: own,
                    },
                });
            }
            IpAddr::V6(own) => {
                let Some(dest) = self.link.ipv6_group(ALL_NODES) else {
                    return;
                };
                self.stats.na_sent += 1;
                actions.push(Action::SendNeighborAdvertisement {
                    dest,
                    msg: NdMessage {
                        src: own,
                        dst: ALL_NODES,
                        repr: NdRepr::NeighborAdvert {
                            flags: NeighborFlags {
                                router: false,
                                solicited: false,
                                override_: true,
                            },
                            target_addr: own,
                            target_lladdr: Some(self.link.hwaddr),
                        },
                    },
                });
            }
        }
    }

    /// The source address of our ARP requests: our first IPv4 address, or
    /// 0.0.0.0 (an ARP probe) when we have none.
    fn source_v4(&self) -> Ipv4Addr {
        self.addrs
            .iter()
            .find_map(|ip| match ip {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }
}
