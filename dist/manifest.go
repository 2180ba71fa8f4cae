// Package dist holds the files that install flannel on a node or a cluster
// (mk-docker-opts.sh, the systemd unit and its environment file, the
// Kubernetes manifests, the Dockerfile) and the tests that keep them
// consistent with each other and with the daemon's interface.
package dist

import _ "embed"

// KubeFlannelYAML is kube-flannel.yml, the kube-mode manifest. The lab
// (pkg/lab) applies its ServiceAccount, ClusterRole and ClusterRoleBinding to
// its kube-apiserver, so the end-to-end tests run flanneld with exactly the
// permissions users grant it.
//
//go:embed kube-flannel.yml
var KubeFlannelYAML []byte
