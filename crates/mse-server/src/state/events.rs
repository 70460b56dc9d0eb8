//! A node's status events, applied to the store and the routing table: the
//! same for the local runner's nodes and for remote hosts' reports.

use std::net::SocketAddr;

use mse_api::event::Event;

use super::now;
use super::routes::Routes;
use crate::domain::app::App;
use crate::domain::lifecycle::{is_hex_digest, CertificateOrigin, Status};
use crate::domain::routing::{Route, RouteMode};
use crate::store::{Reported, Store};

/// Marks the live apps of nodes (other than `except`) whose lease ran out
/// `on_error` ("node lost"), saying so in the log.
pub async fn reap_lost_nodes(store: &Store, except: Option<&str>, now: i64) {
    match store.fail_lost_nodes(except.unwrap_or(""), now).await {
        Ok(0) => {}
        Ok(n) => eprintln!("{n} app(s) lost their node (its lease ran out)"),
        Err(e) => eprintln!("the store failed while looking for lost nodes: {e}"),
    }
}

/// Applies a node's status event to the store and the routing table
/// (`remote`: the node is a remote host). `Some(reason)` when the node must
/// be stopped.
pub async fn apply_event(
    store: &Store,
    routes: &Routes,
    app: &App,
    event: &Event,
    remote: bool,
) -> Option<String> {
    let reason = event.reason.as_deref();
    let addr: Option<SocketAddr> = event.listen.as_deref().and_then(|l| l.parse().ok());
    // Whether it is moving off its node, as the store says now (`app` may
    // be as it was when its node started).
    let moving = match event.status {
        Status::OnError | Status::Stopped => store
            .app(&app.id)
            .await
            .ok()
            .flatten()
            .and_then(|current| current.moving.zip(current.node_owner)),
        _ => None,
    };
    match event.status {
        // Not a node's to say: the platform's state of an app no node has
        // started yet.
        Status::Spawning => {}
        Status::Initializing => {
            let Some(addr) = addr else {
                let why = "the node did not say where it listens";
                let _ = store
                    .transition(&app.id, Status::OnError, Some(why), now())
                    .await;
                return Some(why.to_string());
            };
            let _ = store.set_node_addr(&app.id, &addr.to_string()).await;
            if let Some(sandbox) = &event.sandbox {
                let _ = store
                    .set_reported(&app.id, Reported::Sandbox, sandbox)
                    .await;
            }
            if let Some(limits) = &event.limits {
                let _ = store.set_reported(&app.id, Reported::Limits, limits).await;
            }
            if let Some(fingerprint) = event.fingerprint.as_deref().filter(|f| is_hex_digest(f)) {
                let _ = store
                    .set_reported(&app.id, Reported::Fingerprint, fingerprint)
                    .await;
            }
            if store
                .transition(&app.id, Status::Initializing, None, now())
                .await
                .unwrap_or(false)
            {
                let route = Route {
                    addr,
                    mode: RouteMode::Passthrough,
                    app_id: app.id.clone(),
                    remote,
                };
                routes.set(&app.config_domain_name, route.clone());
                routes.set(&app.domain_name, route);
            }
        }
        Status::Running => {
            // Stored before the status, so whoever sees `running` sees the
            // certificate too; later `running` lines (a renewal, a failed
            // attempt) only update it.
            if let Some(certificate) = &event.certificate {
                let _ = store.set_certificate(&app.id, certificate).await;
            }
            let running = store
                .transition(&app.id, Status::Running, None, now())
                .await
                .unwrap_or(false);
            if running && app.config_domain_name != app.domain_name {
                // Configured: only the app's domain leads to it now (see
                // `routes::table`).
                routes.unset(&app.config_domain_name, &app.id);
            }
            if running && app.spec.certificate_origin == CertificateOrigin::Operator {
                let stored = store.app(&app.id).await.ok().flatten();
                let addr = addr.or_else(|| {
                    stored
                        .and_then(|a| a.node_addr)
                        .and_then(|a| a.parse().ok())
                });
                if let Some(addr) = addr {
                    routes.set(
                        &app.domain_name,
                        Route {
                            addr,
                            mode: RouteMode::Terminate,
                            app_id: app.id.clone(),
                            remote,
                        },
                    );
                }
            }
        }
        // A kept app moving off a drained node: its node stopped (its
        // home written back), so it is placed again.
        Status::OnError | Status::Stopped if moving.is_some() => {
            routes.remove_app(&app.id);
            let (why, from) = moving.unwrap_or_default();
            let moved = store
                .reschedule_kept(&app.id, &from, &why, Some(&from), now())
                .await
                .unwrap_or(false);
            if !moved {
                let _ = store.transition(&app.id, event.status, reason, now()).await;
            }
        }
        Status::OnError => {
            routes.remove_app(&app.id);
            let _ = store
                .transition(&app.id, Status::OnError, reason, now())
                .await;
        }
        Status::Stopped => {
            routes.remove_app(&app.id);
            let _ = store
                .transition(&app.id, Status::Stopped, reason, now())
                .await;
        }
    }
    None
}
