//! Test hosts on one machine: network namespaces joined by veth pairs to a
//! bridge in a namespace of their own, with addresses from 198.18.0.0/24
//! (the benchmarking range, which nothing outside these namespaces uses).
//! Every namespace is the test's own and removed when the [`Network`] is
//! dropped; a host's link can be cut and restored, as a pulled cable.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A set of hosts on one switch.
#[derive(Debug)]
pub struct Network {
    prefix: String,
    hosts: Vec<String>,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2): {e}"));
    assert!(
        output.status.success(),
        "`ip {}` failed (the multi-host tests need root and iproute2): {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Network {
    /// Hosts named `hosts`, the first at 198.18.0.1, the next at .2, …;
    /// each has its loopback up and one link to the switch.
    pub fn create(hosts: &[&str]) -> Network {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "mse{}n{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let network = Network {
            prefix,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        };
        let switch = network.switch();
        ip(&["netns", "add", &switch]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for (index, host) in hosts.iter().enumerate() {
            let ns = network.namespace(host);
            let (inside, outside) = network.link_names(index);
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n", &switch, "link", "add", &outside, "type", "veth", "peer", "name", &inside,
                "netns", &ns,
            ]);
            ip(&["-n", &switch, "link", "set", &outside, "master", "br0"]);
            ip(&["-n", &switch, "link", "set", &outside, "up"]);
            let address = format!("{}/24", network.address(host));
            ip(&["-n", &ns, "addr", "add", &address, "dev", &inside]);
            ip(&["-n", &ns, "link", "set", &inside, "up"]);
        }
        network
    }

    fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }

    /// The namespace of `host`.
    pub fn namespace(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    fn index(&self, host: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h == host)
            .unwrap_or_else(|| panic!("no host `{host}` in this network"))
    }

    /// Interface names (at most 15 bytes): the host's end, the switch's.
    fn link_names(&self, index: usize) -> (String, String) {
        let tag = std::process::id() % 100_000;
        let serial = self.prefix.rsplit('n').next().unwrap_or("0");
        (
            format!("h{tag}{serial}x{index}"),
            format!("s{tag}{serial}x{index}"),
        )
    }

    /// The address of `host`.
    pub fn address(&self, host: &str) -> IpAddr {
        let last = u8::try_from(self.index(host) + 1).expect("at most 254 hosts");
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
    }

    /// Moves the calling thread into `host`'s namespace: its sockets, and
    /// the processes it starts, are on that host from now on.
    pub fn enter(&self, host: &str) {
        let file = std::fs::File::open(format!("/run/netns/{}", self.namespace(host)))
            .expect("the namespace exists");
        // SAFETY: setns on a descriptor this function holds open.
        let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(done, 0, "setns: {}", std::io::Error::last_os_error());
    }

    /// Makes `command` start on `host`.
    pub fn on(&self, host: &str, command: &mut Command) {
        let file = std::fs::File::open(format!("/run/netns/{}", self.namespace(host)))
            .expect("the namespace exists");
        // SAFETY: setns is async-signal-safe; the descriptor stays open
        // (moved into the closure) until the command is dropped.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }

    /// Cuts `host`'s link (its switch port goes down).
    pub fn cut(&self, host: &str) {
        let (_, outside) = self.link_names(self.index(host));
        ip(&["-n", &self.switch(), "link", "set", &outside, "down"]);
    }

    /// Restores `host`'s link.
    pub fn restore(&self, host: &str) {
        let (_, outside) = self.link_names(self.index(host));
        ip(&["-n", &self.switch(), "link", "set", &outside, "up"]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in &self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.namespace(host)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.switch()])
            .output();
    }
}
