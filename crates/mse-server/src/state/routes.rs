//! The proxy's routing table: server name → node. Two sources fill it: the
//! node runner of the same process sets its own apps' routes the moment their
//! state changes, and a proxy following the store loads every node's routes
//! from it (every few hundred milliseconds, and at once for a server name it
//! does not know).
//!
//! A route never leads to a platform listener (the API's, the proxy's), nor
//! an app of a remote host to an address that is not a host's (loopback,
//! link-local, …): [`Routes::forwardable`], which the proxy asks before
//! each connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::routing::{table, unroutable, Route};
use crate::store::{Store, StoreError};

/// Whether a listener bound to `listener` receives what is sent to `ip`:
/// the same address, or, for a listener on every address, any address of
/// this machine (one a socket can be bound to).
fn listens_on(listener: IpAddr, ip: IpAddr) -> bool {
    let listener = listener.to_canonical();
    if listener.is_unspecified() {
        return ip.is_loopback()
            || ip.is_unspecified()
            || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok();
    }
    listener == ip
}

/// The shortest time between two loads from the store, so that unknown
/// server names (scanners) cannot keep the store busy.
const MIN_LOAD_GAP: Duration = Duration::from_millis(100);

/// Server name → route, shared with the proxy. Names are case-insensitive.
#[derive(Debug, Default)]
pub struct Routes {
    /// Set by this process's node runner.
    local: RwLock<HashMap<String, Route>>,
    /// Loaded from the store (every node's routes).
    stored: RwLock<HashMap<String, Route>>,
    /// The store to load from, when following one.
    source: OnceLock<Source>,
    /// The platform's own listeners (API, proxy): no route leads there.
    platform: RwLock<Vec<SocketAddr>>,
}

#[derive(Debug)]
struct Source {
    store: Store,
    /// When the last load started; held while loading, so loads never overlap.
    last: tokio::sync::Mutex<Option<Instant>>,
}

impl Routes {
    /// Records a listener of the platform (the API's, the proxy's): no
    /// route leads to it, and no host advertises its address.
    pub fn add_platform_listener(&self, addr: SocketAddr) {
        if let Ok(mut platform) = self.platform.write() {
            platform.push(addr);
        }
    }

    /// Whether `ip` is an address a platform listener listens on (any
    /// address of this machine, for a listener on every address).
    pub fn is_platform_address(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let Ok(platform) = self.platform.read() else {
            return true;
        };
        platform.iter().any(|l| listens_on(l.ip(), ip))
    }

    /// Whether the proxy may forward to `route`: never to a platform
    /// listener, and a remote host's app never to an [`unroutable`]
    /// address.
    pub fn forwardable(&self, route: &Route) -> bool {
        let ip = route.addr.ip().to_canonical();
        if route.remote && unroutable(ip).is_some() {
            return false;
        }
        let Ok(platform) = self.platform.read() else {
            return false;
        };
        !platform
            .iter()
            .any(|l| l.port() == route.addr.port() && listens_on(l.ip(), ip))
    }

    /// The route of a server name, from what is known now.
    pub fn get(&self, name: &str) -> Option<Route> {
        let name = name.to_ascii_lowercase();
        let local = self.local.read().ok().and_then(|m| m.get(&name).cloned());
        local.or_else(|| self.stored.read().ok().and_then(|m| m.get(&name).cloned()))
    }

    /// Routes a server name to a node (the node runner of this process).
    pub fn set(&self, name: &str, route: Route) {
        if let Ok(mut map) = self.local.write() {
            map.insert(name.to_ascii_lowercase(), route);
        }
    }

    /// Removes the route of a server name when it leads to `app_id` (from
    /// what was loaded from the store too, which the next load confirms).
    pub fn unset(&self, name: &str, app_id: &str) {
        let name = name.to_ascii_lowercase();
        for layer in [&self.local, &self.stored] {
            if let Ok(mut map) = layer.write() {
                if map.get(&name).is_some_and(|r| r.app_id == app_id) {
                    map.remove(&name);
                }
            }
        }
    }

    /// Removes every route of an app.
    pub fn remove_app(&self, app_id: &str) {
        for layer in [&self.local, &self.stored] {
            if let Ok(mut map) = layer.write() {
                map.retain(|_, r| r.app_id != app_id);
            }
        }
    }

    /// Follows `store`: [`Routes::load`] and [`Routes::resolve`] read it.
    /// Only the first call counts.
    pub fn follow(&self, store: Store) {
        let _ = self.source.set(Source {
            store,
            last: tokio::sync::Mutex::new(None),
        });
    }

    /// The route of a server name; when it is unknown and the table follows a
    /// store, after loading the store again (a load that started after this
    /// call, so an app the store lists by now is found).
    pub async fn resolve(&self, name: &str) -> Option<Route> {
        if let Some(route) = self.get(name) {
            return Some(route);
        }
        let source = self.source.get()?;
        let asked = Instant::now();
        let mut last = source.last.lock().await;
        if last.is_some_and(|started| started >= asked) {
            // Another caller's load started after this one asked.
            drop(last);
            return self.get(name);
        }
        if let Some(started) = *last {
            tokio::time::sleep_until(started + MIN_LOAD_GAP).await;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.load_from(&source.store).await {
            eprintln!("proxy: cannot load the routes: {e}");
        }
        drop(last);
        self.get(name)
    }

    /// Loads every node's routes from the followed store (nothing when the
    /// table follows none).
    pub async fn load(&self) -> Result<(), StoreError> {
        let Some(source) = self.source.get() else {
            return Ok(());
        };
        let mut last = source.last.lock().await;
        *last = Some(Instant::now());
        self.load_from(&source.store).await
    }

    /// Loads the routes from the followed store every `period`, forever.
    pub async fn follow_every(&self, period: Duration) {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = self.load().await {
                eprintln!("proxy: cannot load the routes: {e}");
            }
        }
    }

    async fn load_from(&self, store: &Store) -> Result<(), StoreError> {
        let table = table(&store.routed_apps().await?);
        if let Ok(mut stored) = self.stored.write() {
            *stored = table;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::routing::RouteMode;

    #[test]
    fn local_routes_win_and_removal_clears_both_layers() {
        let routes = Routes::default();
        let at = |port: u16| Route {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            mode: RouteMode::Passthrough,
            app_id: "x".to_string(),
            remote: false,
        };
        routes
            .stored
            .write()
            .unwrap()
            .insert("x.test".to_string(), at(1));
        assert_eq!(routes.get("X.TEST").unwrap().addr.port(), 1);
        routes.set("x.test", at(2));
        assert_eq!(routes.get("x.test").unwrap().addr.port(), 2);
        routes.remove_app("x");
        assert!(routes.get("x.test").is_none());
    }

    #[test]
    fn unset_removes_a_name_only_when_it_leads_to_that_app() {
        let routes = Routes::default();
        let route = |app_id: &str| Route {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            mode: RouteMode::Passthrough,
            app_id: app_id.to_string(),
            remote: false,
        };
        routes.set("cfg.test", route("x"));
        routes
            .stored
            .write()
            .unwrap()
            .insert("cfg.test".to_string(), route("x"));
        routes.unset("CFG.test", "y");
        assert!(
            routes.get("cfg.test").is_some(),
            "another app's route stays"
        );
        routes.unset("cfg.test", "x");
        assert!(routes.get("cfg.test").is_none(), "gone from both layers");
    }

    #[test]
    fn no_route_leads_to_a_platform_listener_nor_a_remote_app_to_this_machine() {
        let routes = Routes::default();
        routes.add_platform_listener("127.0.0.1:9443".parse().unwrap());
        routes.add_platform_listener("0.0.0.0:8443".parse().unwrap());
        routes.add_platform_listener("198.18.0.1:9444".parse().unwrap());
        let route = |addr: &str, remote: bool| Route {
            addr: addr.parse().unwrap(),
            mode: RouteMode::Terminate,
            app_id: "x".to_string(),
            remote,
        };
        for (addr, remote) in [
            ("127.0.0.1:9443", false),
            ("[::ffff:127.0.0.1]:9443", false),
            ("127.0.0.1:8443", false),
            ("198.18.0.1:9444", true),
            ("127.0.0.1:4000", true),
            ("[::1]:4000", true),
            ("169.254.169.254:80", true),
            ("[fe80::1]:4000", true),
            ("0.0.0.0:4000", true),
            ("224.0.0.1:4000", true),
            ("255.255.255.255:4000", true),
        ] {
            assert!(!routes.forwardable(&route(addr, remote)), "{addr}");
        }
        for (addr, remote) in [
            ("127.0.0.1:4000", false),
            ("198.18.0.7:4000", true),
            ("10.9.9.9:4000", true),
            // Another machine's port that a listener on every address of
            // this one uses too.
            ("192.0.2.7:8443", true),
        ] {
            assert!(routes.forwardable(&route(addr, remote)), "{addr}");
        }
        assert!(routes.is_platform_address("198.18.0.1".parse().unwrap()));
        assert!(!routes.is_platform_address("198.18.0.2".parse().unwrap()));
    }
}
