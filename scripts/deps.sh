#!/bin/sh
# Installs what the demo and the tests need on a Debian machine, idempotently:
# iproute2 (ip, bridge), iptables and nftables (traffic rules), the reference
# CNI plugins in /usr/lib/cni (bridge, host-local, loopback, portmap), ping
# and iperf3. etcd needs no package: the tests build its Go server.
set -eu
pkgs="iproute2 iptables nftables containernetworking-plugins iputils-ping iperf3 procps kmod"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "installing:$missing"
	if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
command -v go >/dev/null || { echo "Go is required (https://go.dev/dl/)" >&2; exit 1; }
