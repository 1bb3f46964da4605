//! Who is watching: per signal, the distinct clients that asked for its
//! playlist or segments within the last [`WINDOW_TARGETS`] target
//! durations (a player asks at least once per target duration, so one
//! missed reload does not make a viewer vanish).
//!
//! A client is its address and its `User-Agent`, hashed together (with a
//! key chosen at start, so nobody can make two clients collide on purpose):
//! - the address is the connection's peer, unless the peer is one of
//!   `TRUSTED_PROXIES` (a load balancer in front of the proxy): then it is
//!   the nearest `X-Forwarded-For` entry not itself trusted, the address the
//!   balancer saw (the entries further left are whatever the client wrote);
//! - the `User-Agent` tells apart the devices of one household or office
//!   behind one NAT address; two identical players behind one address
//!   still count once, and a CDN in front of the proxy answers most viewers
//!   from its own copies: then this counts the CDN's edges, and the
//!   audience is in the CDN's logs.
//!
//! Memory is bounded: clients are forgotten once out of the window (every
//! poll of the signal), and at most [`MAX_TRACKED`] are held per signal;
//! past that, new ones are not counted until older ones expire.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A viewer is counted while it asked within this many target durations.
pub(super) const WINDOW_TARGETS: u32 = 2;
/// Most clients held per signal (about 40 bytes each).
pub(super) const MAX_TRACKED: usize = 100_000;

/// One client, as a keyed hash of its address and `User-Agent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct ViewerId(u64);

/// Makes [`ViewerId`]s with one secret key per proxy.
#[derive(Debug, Clone, Default)]
pub(super) struct ViewerKeys {
    keys: RandomState,
}

impl ViewerKeys {
    pub(super) fn id(&self, address: IpAddr, user_agent: Option<&[u8]>) -> ViewerId {
        ViewerId(self.keys.hash_one((address, user_agent)))
    }
}

/// The client's address: the peer's, or when the peer is a trusted proxy,
/// the nearest `X-Forwarded-For` address that is not (see the module doc).
/// `None` without a peer (an in-process test request).
pub(super) fn client_address(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let hops = forwarded_for.unwrap_or_default().rsplit(',');
    for hop in hops {
        match hop.trim().parse::<IpAddr>() {
            Ok(address) if trusted.contains(&address) => continue,
            Ok(address) => return Some(address),
            // Garbage where an address should be: the hops left of it are
            // not to be believed either; the last trusted hop is the client.
            Err(_) => break,
        }
    }
    Some(peer)
}

/// The clients of one signal and when each last asked.
#[derive(Debug, Default)]
pub(super) struct Viewers {
    last_seen: HashMap<ViewerId, Instant>,
    /// When a full table was last swept for room: at most once per
    /// `FULL_SWEEP_EVERY`, so a flood of new clients costs no sweep each.
    swept_when_full: Option<Instant>,
}

/// How often a full table is swept for expired viewers to make room.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Viewers {
    /// `viewer` asked now; `window` is how long viewers count.
    pub(super) fn seen(&mut self, viewer: ViewerId, now: Instant, window: Duration) {
        if self.last_seen.len() >= MAX_TRACKED && !self.last_seen.contains_key(&viewer) {
            let due = self
                .swept_when_full
                .is_none_or(|at| now.saturating_duration_since(at) >= FULL_SWEEP_EVERY);
            if due {
                self.swept_when_full = Some(now);
                self.expire(now, window);
            }
            if self.last_seen.len() >= MAX_TRACKED {
                return;
            }
        }
        self.last_seen.insert(viewer, now);
    }

    /// Forgets viewers who did not ask within `window`; the count left.
    pub(super) fn expire(&mut self, now: Instant, window: Duration) -> usize {
        self.last_seen
            .retain(|_, at| now.saturating_duration_since(*at) <= window);
        self.last_seen.len()
    }

    /// Viewers who asked within `window`, without forgetting any.
    pub(super) fn count(&self, now: Instant, window: Duration) -> usize {
        self.last_seen
            .values()
            .filter(|at| now.saturating_duration_since(**at) <= window)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(4);

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn distinct_clients_are_counted_once_each_while_they_ask() {
        let keys = ViewerKeys::default();
        let t0 = Instant::now();
        let mut viewers = Viewers::default();
        let phone = keys.id(ip("203.0.113.7"), Some(b"AppleCoreMedia/1.0"));
        let laptop = keys.id(ip("203.0.113.7"), Some(b"Mozilla/5.0 Firefox"));
        let other_home = keys.id(ip("198.51.100.2"), Some(b"AppleCoreMedia/1.0"));
        for second in 0..3 {
            let now = t0 + Duration::from_secs(second);
            viewers.seen(phone, now, WINDOW);
            viewers.seen(laptop, now, WINDOW);
        }
        viewers.seen(other_home, t0, WINDOW);
        assert_eq!(
            viewers.count(t0 + Duration::from_secs(2), WINDOW),
            3,
            "one household's two devices and another household"
        );
        assert_eq!(
            keys.id(ip("203.0.113.7"), Some(b"AppleCoreMedia/1.0")),
            phone,
            "the same client is the same viewer"
        );
        // The other household stops asking: gone after the window.
        let later = t0 + Duration::from_secs(6);
        assert_eq!(viewers.count(later, WINDOW), 2);
        assert_eq!(viewers.expire(later, WINDOW), 2);
        assert_eq!(viewers.last_seen.len(), 2, "forgotten, not only uncounted");
        assert_eq!(viewers.expire(t0 + Duration::from_secs(60), WINDOW), 0);
    }

    #[test]
    fn memory_is_bounded_however_many_clients_ask() {
        let keys = ViewerKeys::default();
        let t0 = Instant::now();
        let mut viewers = Viewers::default();
        for i in 0..(MAX_TRACKED as u32 + 500) {
            let address = IpAddr::from(i.to_be_bytes());
            viewers.seen(keys.id(address, None), t0, WINDOW);
        }
        assert_eq!(viewers.last_seen.len(), MAX_TRACKED);
        // Once the crowd's window passed, new clients are counted again.
        let later = t0 + WINDOW * 2;
        viewers.seen(keys.id(ip("192.0.2.1"), None), later, WINDOW);
        assert_eq!(viewers.count(later, WINDOW), 1);
        assert_eq!(viewers.last_seen.len(), 1);
    }

    #[test]
    fn the_address_is_the_peer_unless_a_trusted_balancer_forwards() {
        let balancer = ip("10.0.0.5");
        let cdn = ip("10.0.0.9");
        let trusted = [balancer, cdn];
        let viewer = ip("203.0.113.7");
        assert_eq!(client_address(None, None, &trusted), None);
        assert_eq!(
            client_address(Some(viewer), Some("1.2.3.4"), &trusted),
            Some(viewer),
            "an untrusted peer cannot claim another address"
        );
        assert_eq!(
            client_address(Some(balancer), Some("203.0.113.7"), &trusted),
            Some(viewer)
        );
        assert_eq!(
            client_address(
                Some(balancer),
                Some("6.6.6.6, 203.0.113.7, 10.0.0.9"),
                &trusted
            ),
            Some(viewer),
            "the nearest untrusted hop, not what the client wrote first"
        );
        assert_eq!(
            client_address(Some(balancer), None, &trusted),
            Some(balancer),
            "a trusted peer that forwards nothing is the client"
        );
        assert_eq!(
            client_address(Some(balancer), Some("junk, 10.0.0.9"), &trusted),
            Some(balancer)
        );
    }
}
