//! Where a peer may be reached. A site run by a replica group is reachable only at its raft
//! leader's federation address, and which replica leads changes; so a peer name maps to every
//! address it may answer at. They are tried in turn, starting with the one that answered
//! last, so a peer whose leader did not move costs one dial.

use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddrs {
    addrs: Vec<SocketAddr>,
    /// Index of the address that answered last (the first one before any did).
    preferred: usize,
}

impl PeerAddrs {
    /// `None` for an empty list: a peer needs somewhere to be reached.
    pub fn new(addrs: Vec<SocketAddr>) -> Option<PeerAddrs> {
        (!addrs.is_empty()).then_some(PeerAddrs { addrs, preferred: 0 })
    }

    pub fn one(addr: SocketAddr) -> PeerAddrs {
        PeerAddrs { addrs: vec![addr], preferred: 0 }
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The order to dial in: the preferred address, then the others in their listed order.
    pub fn dial_order(&self) -> Vec<SocketAddr> {
        let mut order = Vec::with_capacity(self.addrs.len());
        order.push(self.addrs[self.preferred]);
        order.extend(self.addrs.iter().enumerate().filter(|(i, _)| *i != self.preferred).map(|(_, a)| *a));
        order
    }

    /// `addr` answered: dial it first next time (ignored if it is not one of ours, e.g. the
    /// list changed while the dial was under way).
    pub fn answered(&mut self, addr: SocketAddr) {
        if let Some(i) = self.addrs.iter().position(|a| *a == addr) {
            self.preferred = i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn the_address_that_answered_is_dialled_first_then_the_rest_in_order() {
        let mut p = PeerAddrs::new(vec![addr(1), addr(2), addr(3)]).expect("not empty");
        assert_eq!(p.dial_order(), vec![addr(1), addr(2), addr(3)]);
        p.answered(addr(3));
        assert_eq!(p.dial_order(), vec![addr(3), addr(1), addr(2)]);
        p.answered(addr(9));
        assert_eq!(p.dial_order(), vec![addr(3), addr(1), addr(2)], "an unknown address changes nothing");
        assert!(PeerAddrs::new(Vec::new()).is_none());
    }
}
