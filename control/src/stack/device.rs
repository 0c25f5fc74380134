//! A smoltcp device over two in-memory queues of IP packets. The IPoIB link
//! layer (ARP/ND, encapsulation) lives below it, so the medium is `Ip`.

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use std::collections::VecDeque;

/// IP packets in (to the stack) and out (from the stack).
#[derive(Debug)]
pub struct QueueDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    mtu: usize,
    capacity: usize,
    rx_dropped: u64,
    tx_dropped: u64,
}

impl QueueDevice {
    /// `mtu` is the IP MTU (the IPoIB MTU: UD message size less 4);
    /// each queue holds at most `capacity` packets.
    pub fn new(mtu: usize, capacity: usize) -> Self {
        QueueDevice {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            mtu,
            capacity: capacity.max(1),
            rx_dropped: 0,
            tx_dropped: 0,
        }
    }

    /// Queues a received IP packet; false (and counted) when full.
    pub fn push_rx(&mut self, packet: Vec<u8>) -> bool {
        if self.rx.len() >= self.capacity {
            self.rx_dropped += 1;
            return false;
        }
        self.rx.push_back(packet);
        true
    }

    /// Takes the next packet the stack sent.
    pub fn pop_tx(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    pub fn rx_len(&self) -> usize {
        self.rx.len()
    }
    pub fn tx_len(&self) -> usize {
        self.tx.len()
    }
    pub fn rx_dropped(&self) -> u64 {
        self.rx_dropped
    }
    pub fn tx_dropped(&self) -> u64 {
        self.tx_dropped
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((
            RxToken { packet },
            TxToken {
                queue: &mut self.tx,
                capacity: self.capacity,
                dropped: &mut self.tx_dropped,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        // No token when full: smoltcp keeps the packet for a later poll.
        if self.tx.len() >= self.capacity {
            return None;
        }
        Some(TxToken {
            queue: &mut self.tx,
            capacity: self.capacity,
            dropped: &mut self.tx_dropped,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}

#[doc(hidden)]
pub struct RxToken {
    packet: Vec<u8>,
}

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.packet)
    }
}

#[doc(hidden)]
pub struct TxToken<'a> {
    queue: &'a mut VecDeque<Vec<u8>>,
    capacity: usize,
    dropped: &'a mut u64,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0u8; len];
        let result = f(&mut packet);
        // A reply built from a receive token may find the queue full.
        if self.queue.len() < self.capacity {
            self.queue.push_back(packet);
        } else {
            *self.dropped += 1;
        }
        result
    }
}
