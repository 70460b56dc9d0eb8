//! Whether other clients can reach an app's URL from this machine: `mse`
//! resolves `*.localhost` names by itself (RFC 6761), but Python clients and
//! most other programs ask the system's resolver. When it does not know the
//! URL's name, the user is told exactly what to do.

use std::net::{IpAddr, ToSocketAddrs};

/// The two commands that make the system's resolver resolve every
/// `*.localhost` name (glibc's `myhostname` module), as root; the same as
/// `scripts/localhost-names.sh` runs.
pub const LOCALHOST_FIX: &str = "apt-get install -y libnss-myhostname\n\
sed -i -E '/^hosts:/{/\\<myhostname\\>/!s/\\<files\\>/files myhostname/}' /etc/nsswitch.conf";

/// True when the system's resolver gives `host` an address.
pub fn resolves(host: &str, port: u16) -> bool {
    (host, port)
        .to_socket_addrs()
        .is_ok_and(|mut addrs| addrs.next().is_some())
}

/// True for `localhost` and the names under it.
fn is_localhost(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// What to do when `host`, the name of `url`, does not resolve: for a
/// `*.localhost` name, the resolver fix; for an app's own domain, a line
/// for `/etc/hosts` (with `proxy`, the address `mse` reached the platform's
/// proxy at) or a DNS record.
pub fn advice(host: &str, url: &str, proxy: Option<IpAddr>) -> String {
    let indent = |text: &str| {
        text.lines()
            .map(|line| format!("    {line}\n"))
            .collect::<String>()
    };
    if is_localhost(host) {
        return format!(
            "{host} does not resolve on this machine: `mse`, curl and browsers reach *.localhost \
             names by themselves, but Python clients (requests, urllib) and most other programs \
             cannot reach {url}.\nTo make every *.localhost name resolve to the loopback address, \
             run as root:\n{}",
            indent(LOCALHOST_FIX)
        );
    }
    let address = proxy.map_or_else(|| "PROXY_ADDRESS".to_string(), |ip| ip.to_string());
    format!(
        "{host} does not resolve on this machine: browsers, curl and Python clients cannot \
         reach {url} yet.\nTo reach it from this machine, add this line to /etc/hosts:\n{}\
         or, for everyone, publish a DNS record for {host}: a CNAME to the platform's proxy.\n",
        indent(&format!("{address} {host}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_names_get_the_resolver_fix() {
        let text = advice("abc.localhost", "https://abc.localhost:8443", None);
        assert!(
            text.contains("apt-get install -y libnss-myhostname\n"),
            "{text}"
        );
        assert!(text.contains("/etc/nsswitch.conf\n"), "{text}");
        assert!(!text.contains("/etc/hosts"), "{text}");
    }

    #[test]
    fn an_own_domain_gets_a_hosts_line_with_the_proxy_address() {
        let proxy = Some(IpAddr::from([127, 0, 0, 1]));
        let text = advice("shop.example.test", "https://shop.example.test", proxy);
        assert!(
            text.contains("\n    127.0.0.1 shop.example.test\n"),
            "{text}"
        );
        assert!(text.contains("CNAME"), "{text}");
    }

    #[test]
    fn the_localhost_fix_is_the_one_the_set_up_script_applies() {
        let script = include_str!("../../../scripts/localhost-names.sh");
        let (install, edit) = LOCALHOST_FIX.split_once('\n').unwrap();
        assert!(script.contains(install), "{install}");
        let expression = edit.split('\'').nth(1).unwrap();
        assert!(
            script.contains(&format!("nss_edit='{expression}'")),
            "{expression}"
        );
    }
}
