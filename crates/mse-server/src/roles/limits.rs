//! Connection caps shared by the REST API and the SNI proxy: a total and a
//! per-source-address one, so that no client holding many idle connections
//! locks the others out or exhausts the process's descriptors.
//!
//! The count map sits under a short lock taken only when a connection is
//! admitted and when it closes, never on the data path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The key a source address is counted under: an IPv4 address (also when it
/// arrives IPv4-mapped), or the /64 prefix of an IPv6 one (what one host
/// usually holds).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every connection slot is taken.
    Total,
    /// The source address holds its share already.
    PerSource,
}

/// A total and a per-source-address connection cap.
#[derive(Debug)]
pub struct ConnectionCaps {
    total: Arc<Semaphore>,
    per_source: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnectionCaps {
    /// At most `total` connections at once, `per_source` from any one source
    /// (both at least 1; `total` at most [`Semaphore::MAX_PERMITS`]).
    pub fn new(total: usize, per_source: usize) -> Arc<Self> {
        Arc::new(ConnectionCaps {
            total: Arc::new(Semaphore::new(total.clamp(1, Semaphore::MAX_PERMITS))),
            per_source: per_source.max(1),
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Admits a connection from `source`, or says which cap it is over. The
    /// slot is held until the returned guard is dropped.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Admitted, Refused> {
        let key = source_key(source);
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Total)?;
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key).or_insert(0);
        if *count >= self.per_source {
            return Err(Refused::PerSource);
        }
        *count += 1;
        drop(counts);
        Ok(Admitted {
            caps: self.clone(),
            key,
            _permit: permit,
        })
    }

    /// Connections held now from `source`.
    pub fn held_by(&self, source: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&source_key(source)).copied().unwrap_or(0)
    }
}

/// A connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Admitted {
    caps: Arc<ConnectionCaps>,
    key: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self.caps.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// `limit`, at most a year: timeouts and grace periods set by an operator
/// stay in a range where deadline arithmetic cannot overflow.
pub fn at_most_a_year(limit: std::time::Duration) -> std::time::Duration {
    limit.min(std::time::Duration::from_secs(365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_gets_its_share_and_a_closed_connection_frees_its_slot() {
        let caps = ConnectionCaps::new(5, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).unwrap_err(), Refused::PerSource);
        let _b1 = caps.admit(b).unwrap();
        assert_eq!(caps.held_by(a), 2);
        drop(a1);
        assert_eq!(caps.held_by(a), 1);
        let _a3 = caps.admit(a).unwrap();
        let _b2 = caps.admit(b).unwrap();
        let c: IpAddr = "127.0.0.3".parse().unwrap();
        let _c1 = caps.admit(c).unwrap();
        assert_eq!(caps.admit(c).unwrap_err(), Refused::Total);
    }

    #[test]
    fn ipv6_sources_count_by_their_64_prefix_and_mapped_ipv4_as_ipv4() {
        let caps = ConnectionCaps::new(10, 1);
        let _x = caps.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            caps.admit("2001:db8::ffff:2".parse().unwrap()).unwrap_err(),
            Refused::PerSource
        );
        let _y = caps.admit("2001:db8:0:1::1".parse().unwrap()).unwrap();
        let _v4 = caps.admit("10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(
            caps.admit("::ffff:10.0.0.1".parse().unwrap()).unwrap_err(),
            Refused::PerSource
        );
    }
}
