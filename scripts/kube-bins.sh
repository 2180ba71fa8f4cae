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
# GOWORK=off: the nested module builds on its own go.mod, whatever
# workspace a developer has around the checkout.
export GOWORK=off
# The version pinned in tools/kube/go.mod, stamped in as Kubernetes' own
# build does (hack/lib/version.sh), so /version and `kubectl version` say
# v1.37.2 rather than v0.0.0-master. Only the link step sees it.
ver=$(cd "$mod" && "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes)
major=${ver#v}
major=${major%%.*}
minor=${ver#v*.}
minor=${minor%%.*}
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags="$ldflags -X $pkg.gitVersion=$ver -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
for cmd in kube-apiserver kubectl; do
	dst=$out/$cmd
	if [ -x "$dst" ] && [ "$dst" -nt "$mod/go.sum" ] && [ "$dst" -nt "$mod/go.mod" ]; then
		echo "kube-bins: $dst is up to date"
		continue
	fi
	echo "kube-bins: building $dst $ver (cold: about 15 minutes on two cores)"
	start=$(date +%s)
	(cd "$mod" && "$GO" build -trimpath -ldflags "$ldflags" -o "$dst.tmp" "k8s.io/kubernetes/cmd/$cmd")
	mv -f "$dst.tmp" "$dst"
	echo "kube-bins: built $dst in $(($(date +%s) - start)) s"
done
