//! Routing: which node a server name leads to, and where no route may lead.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// How a route is served by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMode {
    /// TLS passes through to the node untouched.
    Passthrough,
    /// The proxy terminates TLS with the operator's certificate and forwards
    /// plain HTTP (`--untrusted-ssl` apps once running).
    Terminate,
}

/// Where a server name leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The node's address.
    pub addr: SocketAddr,
    /// How to serve it.
    pub mode: RouteMode,
    /// The app.
    pub app_id: String,
    /// Served by a remote node host (not this platform's machine).
    pub remote: bool,
}

/// The route id of the key service (docs/keys.md), which the proxy reaches
/// like an app at its own domain; no app's uuid is this.
pub const KEY_SERVICE_ROUTE: &str = "key-service";

/// Why no node host may be reached at `ip`, if so: it names this machine
/// (loopback), a link (link-local, the cloud metadata service's
/// 169.254.169.254 among them), no one (unspecified) or many (multicast,
/// broadcast).
pub fn unroutable(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        ip if ip.is_loopback() => Some("a loopback address"),
        ip if ip.is_unspecified() => Some("the unspecified address"),
        ip if ip.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => Some("a link-local address"),
        _ => None,
    }
}

/// What the proxy needs of an app its node serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedApp {
    /// Its uuid.
    pub id: String,
    /// Where users reach it.
    pub domain: String,
    /// Where its configuration server is reached.
    pub config_domain: String,
    /// Its node's address.
    pub node_addr: String,
    /// `running` (else `initializing`).
    pub running: bool,
    /// `--untrusted-ssl`: the proxy terminates TLS once it runs.
    pub operator_tls: bool,
    /// Its node is a remote host.
    pub remote: bool,
}

/// The routing table of the apps nodes serve: the app's domain leads to its
/// node, and so does its configuration domain until the app runs (the
/// configuration is sent there; a redeployed name keeps its first domain, so
/// the new uuid's name would lead to a certificate that does not name it);
/// an `--untrusted-ssl` app's domain is served by the proxy's TLS once it
/// runs. Apps with an unreadable address are left out.
///
/// A name leads to one app only, whatever `apps` holds: a configuration
/// domain (always its own app's uuid) first, then the first app in `apps`
/// (the store lists the oldest first) that names it; a later app naming a
/// name already routed gets no route for it. The store keeps one live app
/// per domain; this keeps the proxy to it should rows ever disagree.
pub fn table(apps: &[RoutedApp]) -> HashMap<String, Route> {
    let mut table = HashMap::new();
    let routable: Vec<(&RoutedApp, SocketAddr)> = apps
        .iter()
        .filter_map(|app| Some((app, app.node_addr.parse::<SocketAddr>().ok()?)))
        .collect();
    let route = |app: &RoutedApp, addr, mode| Route {
        addr,
        mode,
        app_id: app.id.clone(),
        remote: app.remote,
    };
    for (app, addr) in routable.iter().filter(|(app, _)| !app.running) {
        table
            .entry(app.config_domain.to_ascii_lowercase())
            .or_insert_with(|| route(app, *addr, RouteMode::Passthrough));
    }
    for (app, addr) in &routable {
        let mode = if app.running && app.operator_tls {
            RouteMode::Terminate
        } else {
            RouteMode::Passthrough
        };
        table
            .entry(app.domain.to_ascii_lowercase())
            .or_insert_with(|| route(app, *addr, mode));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, running: bool, operator_tls: bool) -> RoutedApp {
        RoutedApp {
            id: id.to_string(),
            domain: format!("{id}.Example.test"),
            config_domain: format!("cfg-{id}.example.test"),
            node_addr: "127.0.0.1:4000".to_string(),
            running,
            operator_tls,
            remote: false,
        }
    }

    #[test]
    fn the_configuration_domain_leads_to_a_node_until_its_app_runs() {
        let table = table(&[
            app("a", false, true),
            app("b", true, true),
            app("c", true, false),
        ]);
        assert_eq!(table.len(), 4);
        assert_eq!(table["a.example.test"].mode, RouteMode::Passthrough);
        assert_eq!(table["cfg-a.example.test"].mode, RouteMode::Passthrough);
        assert_eq!(table["b.example.test"].mode, RouteMode::Terminate);
        assert!(!table.contains_key("cfg-b.example.test"), "b runs");
        assert_eq!(table["c.example.test"].mode, RouteMode::Passthrough);
        assert!(!table.contains_key("cfg-c.example.test"), "c runs");
        let mut broken = app("d", false, false);
        broken.node_addr = "nowhere".to_string();
        assert!(super::table(&[broken]).is_empty());
    }

    #[test]
    fn a_name_named_by_two_apps_leads_to_the_first_and_never_to_the_second() {
        let first = app("a", false, false);
        let mut second = app("b", false, false);
        second.node_addr = "127.0.0.1:5000".to_string();
        second.domain = "A.example.test".to_string();
        let mut third = app("c", false, false);
        third.domain = "cfg-a.example.test".to_string();
        let table = table(&[first, second, third]);
        assert_eq!(table["a.example.test"].app_id, "a");
        assert_eq!(table["a.example.test"].addr.port(), 4000);
        assert_eq!(table["cfg-a.example.test"].app_id, "a", "its own uuid");
        assert_eq!(table["cfg-b.example.test"].app_id, "b");
        assert_eq!(table["cfg-c.example.test"].app_id, "c");
        assert_eq!(table.len(), 4);
    }
}
