//! Who a request came from, and what one client address may hold at once: connections (see
//! [`super::serve`]) and bodies still arriving (see [`super::body`]). Both are counted per
//! address, so that one client cannot take every slot that the others need.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// The address of the client that opened a request's connection, put into every request's
/// extensions by the listening loop. Absent in in-process tests, where nothing is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Counts of something each client address holds, each at most `max`.
#[derive(Debug)]
pub struct PerClient {
    counts: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

impl PerClient {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(PerClient { counts: Mutex::default(), max: max.max(1) })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// One more for `client`, unless it holds `max` already; given back when the slot drops.
    pub fn take(self: &Arc<Self>, client: IpAddr) -> Option<ClientSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot { owner: self.clone(), client })
    }

    #[cfg(test)]
    fn held(&self, client: IpAddr) -> usize {
        self.counts.lock().unwrap().get(&client).copied().unwrap_or(0)
    }
}

/// One of what a client holds; dropping it gives it back. An address that holds nothing is
/// forgotten, so the map is as large as the clients holding something now.
#[derive(Debug)]
pub struct ClientSlot {
    owner: Arc<PerClient>,
    client: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_holds_at_most_its_share_and_gives_it_back() {
        let per_client = PerClient::new(2);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "::1".parse().unwrap());
        let first = per_client.take(a).unwrap();
        let _second = per_client.take(a).unwrap();
        assert!(per_client.take(a).is_none(), "a third for the same address");
        let _other = per_client.take(b).expect("another address is not held back");
        drop(first);
        let _again = per_client.take(a).expect("a slot given back is free again");
        drop(_again);
        drop(_second);
        assert_eq!(per_client.held(a), 0);
        assert!(per_client.counts.lock().unwrap().get(&a).is_none(), "an address holding nothing is forgotten");
    }
}
