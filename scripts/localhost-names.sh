#!/usr/bin/env bash
# Makes every `*.localhost` name resolve to the loopback address for every
# program on this machine (RFC 6761), so the URLs `mse deploy` prints for a
# local platform (`https://<uuid>.localhost:PORT`) work everywhere. curl and
# browsers resolve such names by themselves; Python (`requests`, `urllib`,
# `socket.getaddrinfo`) and most other programs ask the system's resolver,
# which on Debian (`hosts: files dns` in /etc/nsswitch.conf) does not know
# them. The fix is glibc's `myhostname` module (Debian's libnss-myhostname)
# in the `hosts:` line of /etc/nsswitch.conf, after `files` and before `dns`.
#
# Changes nothing when the names resolve already. As root (with apt-get) it
# installs the module and edits the `hosts:` line; otherwise it prints the
# two commands to run. Running it again changes nothing.
set -euo pipefail

probe="probe.localhost"
nsswitch="/etc/nsswitch.conf"
# Adds `myhostname` right after `files` in the `hosts:` line, unless it is
# there already.
nss_edit='/^hosts:/{/\<myhostname\>/!s/\<files\>/files myhostname/}'

resolves() {
    if command -v getent >/dev/null; then
        getent hosts "$1" >/dev/null 2>&1
    else
        python3 -c 'import socket, sys; socket.getaddrinfo(sys.argv[1], 443)' "$1" >/dev/null 2>&1
    fi
}

if resolves "$probe"; then
    exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    cat >&2 <<EOF
warning: this machine's resolver does not resolve *.localhost names ($probe),
so Python clients (requests, urllib) cannot reach the URLs of a local platform
(curl and browsers can). To fix it for every program, run as root:

    apt-get install -y libnss-myhostname
    sed -i -E '$nss_edit' $nsswitch

EOF
    exit 0
fi

echo "==> making *.localhost names resolve to the loopback address (libnss-myhostname in $nsswitch)"
if ! ls /usr/lib/*/libnss_myhostname.so.2 /lib/*/libnss_myhostname.so.2 >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnss-myhostname >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnss-myhostname >/dev/null; }
fi
if grep -q '^hosts:' "$nsswitch" 2>/dev/null; then
    sed -i -E "$nss_edit" "$nsswitch"
else
    echo 'hosts:          files myhostname dns' >>"$nsswitch"
fi
if resolves "$probe"; then
    echo "    $probe now resolves to the loopback address"
else
    echo "warning: $probe still does not resolve; check the hosts: line of $nsswitch" >&2
fi
