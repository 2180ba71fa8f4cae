#!/bin/sh
# Builds bin/etcd2, the test rig's etcd with the v2 API: etcd's own server
# command (etcdmain) from the nested module tools/etcd2, which pins
# go.etcd.io/etcd/server/v3 at the last release line that serves v2
# (3.5, --enable-v2). pkg/lab runs it for StartEtcdV2; the product's go.mod
# stays on etcd 3.7, which has no v2 API.
#
# A cold build takes about 2 minutes on two cores. A binary newer than
# tools/etcd2's go.mod, go.sum and main.go is up to date and is not rebuilt.
# It is linked under a temporary name and renamed into place, so an
# interrupted build never leaves a file that looks up to date.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}
BIN=${BIN:-bin}
case $BIN in
/*) out=$BIN ;;
*) out=$root/$BIN ;;
esac
mod=$root/tools/etcd2
mkdir -p "$out"
# GOWORK=off: the nested module builds on its own go.mod, whatever
# workspace a developer has around the checkout.
export GOWORK=off
dst=$out/etcd2
if [ -x "$dst" ] && [ "$dst" -nt "$mod/go.sum" ] && [ "$dst" -nt "$mod/go.mod" ] && [ "$dst" -nt "$mod/main.go" ]; then
	echo "etcd2: $dst is up to date"
	exit 0
fi
ver=$(cd "$mod" && "$GO" list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
echo "etcd2: building $dst from etcd $ver (cold: about 2 minutes on two cores)"
start=$(date +%s)
# GitSHA names the pinned release in `etcd2 --version` (etcd's ./build
# stamps the commit there).
(cd "$mod" && "$GO" build -trimpath -ldflags "-X go.etcd.io/etcd/api/v3/version.GitSHA=$ver" -o "$dst.tmp" .)
mv -f "$dst.tmp" "$dst"
echo "etcd2: built $dst in $(($(date +%s) - start)) s"
