#!/bin/sh
# Builds the Kubernetes programs of the test rig, kube-apiserver and kubectl,
# from the nested module tools/kube (k8s.io/kubernetes, pinned there) into
# $BIN (default bin/ at the repository root), where pkg/lab finds them.
#
# A cold build takes about 15 minutes on two cores; the Go build cache makes
# later ones quick. A binary newer than tools/kube/go.mod and go.sum is up to
# date and is not rebuilt. Each binary is linked under a temporary name and
# renamed into place, so an interrupted build never leaves a file that looks
# up to date.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}
BIN=${BIN:-bin}
case $BIN in
/*) out=$BIN ;;
*) out=$root/$BIN ;;
esac
mod=$root/tools/kube
mkdir -p "$out"
for cmd in kube-apiserver kubectl; do
	dst=$out/$cmd
	if [ -x "$dst" ] && [ "$dst" -nt "$mod/go.sum" ] && [ "$dst" -nt "$mod/go.mod" ]; then
		echo "kube-bins: $dst is up to date"
		continue
	fi
	echo "kube-bins: building $dst (cold: about 15 minutes on two cores)"
	start=$(date +%s)
	# GOWORK=off: the nested module builds on its own go.mod, whatever
	# workspace a developer has around the checkout.
	(cd "$mod" && GOWORK=off "$GO" build -trimpath -o "$dst.tmp" "k8s.io/kubernetes/cmd/$cmd")
	mv -f "$dst.tmp" "$dst"
	echo "kube-bins: built $dst in $(($(date +%s) - start)) s"
done
