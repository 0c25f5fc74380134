use crate::wire::Gid;

/// Which ports are attached to which groups. Immutable: attach/detach build a
/// new one and swap it in, so senders read it without locking.
#[derive(Debug, Clone, Default)]
pub(crate) struct McastFanout {
    /// Sorted by MGID; member lists sorted by port.
    groups: Vec<(Gid, Vec<usize>)>,
}

impl McastFanout {
    pub(crate) fn members(&self, mgid: &Gid) -> &[usize] {
        match self.groups.binary_search_by(|g| g.0.cmp(mgid)) {
            Ok(i) => &self.groups[i].1,
            Err(_) => &[],
        }
    }

    pub(crate) fn with_member(&self, mgid: Gid, port: usize) -> McastFanout {
        let mut next = self.clone();
        match next.groups.binary_search_by(|g| g.0.cmp(&mgid)) {
            Ok(i) => {
                let m = &mut next.groups[i].1;
                if let Err(pos) = m.binary_search(&port) {
                    m.insert(pos, port);
                }
            }
            Err(i) => next.groups.insert(i, (mgid, vec![port])),
        }
        next
    }

    pub(crate) fn without_member(&self, mgid: Gid, port: usize) -> McastFanout {
        let mut next = self.clone();
        if let Ok(i) = next.groups.binary_search_by(|g| g.0.cmp(&mgid)) {
            next.groups[i].1.retain(|&p| p != port);
            if next.groups[i].1.is_empty() {
                next.groups.remove(i);
            }
        }
        next
    }
}
