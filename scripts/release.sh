#!/bin/sh
# Builds the release assets of one version into $OUT (make release; default
# bin/release), named as upstream flannel names its GitHub release assets:
#
#   flanneld-<arch>                        flanneld (upstream's name)
#   flannel-<arch>                         the CNI plugin (the name upstream's
#                                          flannel-io/cni-plugin releases use)
#   flannelctl-<arch>
#   flannel-<version>-linux-<arch>.tar.gz  upstream's tarball name; inside:
#       flanneld flannel flannelctl mk-docker-opts.sh flanneld.service
#       flanneld.env 10-flannel.conflist README.md CHANGELOG.md
#   kube-flannel.yml, kube-flannel-etcd.yml  the manifests, running
#                                          $IMAGE:<version>
#   sha256sums.txt                         for `sha256sum -c`
#
# All binaries are static (CGO_ENABLED=0), stripped, built with -trimpath,
# and print <version> for --version. ARCHES are GOARCH values; arm is
# GOARM=7, as upstream's. The tarballs are reproducible: sorted names, owner
# root, and the commit's time as every file's mtime.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}
OUT=${OUT:-$root/bin/release}
ARCHES=${ARCHES:-amd64 arm64 arm ppc64le s390x}
IMAGE=${IMAGE:-ghcr.io/flannelng/flannel}
VERSION=${VERSION:-}
if [ -z "$VERSION" ]; then
	VERSION=$(cd "$root" && git describe --tags --always --dirty 2>/dev/null || echo dev)
fi
case $OUT in
/*) ;;
*) OUT=$root/$OUT ;;
esac
# The mtime of every file in the tarballs: the commit's, else a fixed one.
epoch=${SOURCE_DATE_EPOCH:-$(cd "$root" && git log -1 --format=%ct 2>/dev/null || echo 0)}

rm -rf "$OUT"
mkdir -p "$OUT"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

ldflags="-s -w -X github.com/flannelng/flannel/pkg/version.Version=$VERSION"
cd "$root"
for arch in $ARCHES; do
	echo "release: $VERSION linux/$arch" >&2
	for bin in flanneld:cmd/flanneld flannel:cmd/cni-plugin flannelctl:cmd/flannelctl; do
		name=${bin%%:*}
		GOOS=linux GOARCH=$arch GOARM=7 CGO_ENABLED=0 \
			"$GO" build -trimpath -tags grpcnotrace -ldflags "$ldflags" -o "$OUT/$name-$arch" "./${bin#*:}"
	done
	dir=$stage/$arch
	mkdir -p "$dir"
	for name in flanneld flannel flannelctl; do
		cp "$OUT/$name-$arch" "$dir/$name"
	done
	cp dist/mk-docker-opts.sh dist/flanneld.service dist/flanneld.env dist/10-flannel.conflist README.md CHANGELOG.md "$dir/"
	chmod 0755 "$dir/flanneld" "$dir/flannel" "$dir/flannelctl" "$dir/mk-docker-opts.sh"
	chmod 0644 "$dir/flanneld.service" "$dir/flanneld.env" "$dir/10-flannel.conflist" "$dir/README.md" "$dir/CHANGELOG.md"
	# Flat, file names only (flanneld, not ./flanneld), as upstream's.
	# shellcheck disable=SC2046 # the names have no blanks
	tar -C "$dir" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -cf - $(cd "$dir" && LC_ALL=C ls) |
		gzip -9n >"$OUT/flannel-$VERSION-linux-$arch.tar.gz"
done

# The manifests of this version: every reference to the image names this
# version's tag.
for m in kube-flannel.yml kube-flannel-etcd.yml; do
	sed "s#$IMAGE:v[0-9][0-9A-Za-z.+-]*#$IMAGE:$VERSION#g" "dist/$m" >"$OUT/$m"
done

cd "$OUT"
sha256sum -- * >"$stage/sha256sums.txt"
mv "$stage/sha256sums.txt" sha256sums.txt
ls -l >&2
