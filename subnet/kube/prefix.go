package kube

import (
	"errors"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultPrefix is --kube-annotation-prefix's default.
const DefaultPrefix = "flannel.alpha.coreos.com"

// prefixRE is upstream's check, anchored at the start as well: upstream
// matches it anywhere in the prefix, so it also accepts "Foo.example.com"
// or "a b.example.com", whose keys the API server then rejects at the first
// PATCH. Every prefix the API server accepts passes both forms.
var prefixRE = regexp.MustCompile(`^(?:[a-z0-9_-]+\.)+[a-z0-9_-]+/(?:[a-z0-9_-]+-)?$`)

// Errors of NormalizePrefix, with upstream's texts.
var (
	errPrefixSlashes = errors.New("subnet/kube: prefix can contain at most single slash")
	errPrefixFormat  = errors.New("subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*")
)

// NormalizePrefix turns --kube-annotation-prefix into the string every key
// starts with, as upstream does: no slash gets one appended
// ("flannel.alpha.coreos.com" -> "flannel.alpha.coreos.com/"), a name part
// without a trailing "-" gets one ("example.com/fl" -> "example.com/fl-").
func NormalizePrefix(prefix string) (string, error) {
	switch strings.Count(prefix, "/") {
	case 0:
		prefix += "/"
	case 1:
	default:
		return "", errPrefixSlashes
	}
	if !strings.HasSuffix(prefix, "/") && !strings.HasSuffix(prefix, "-") {
		prefix += "-"
	}
	if !prefixRE.MatchString(prefix) {
		return "", errPrefixFormat
	}
	// The pattern lets through what no annotation key may hold (an
	// underscore in the DNS part, a label over 63 characters); the API
	// server would refuse our first PATCH. Refuse it here, at start.
	if len(validation.IsQualifiedName(prefix+"kube-subnet-manager")) > 0 {
		return "", errPrefixFormat
	}
	return prefix, nil
}

// Keys are the annotation keys under one normalised prefix.
type Keys struct {
	Prefix string // normalised, e.g. "flannel.alpha.coreos.com/"

	Managed       string // kube-subnet-manager: exactly "true" on nodes run by flannel
	BackendType   string
	BackendData   string
	BackendV6Data string
	PublicIP      string
	PublicIPv6    string

	// Set by an operator or a tool, read only by the node that owns them.
	PublicIPOverwrite   string // replaces the published public-ip
	PublicIPv6Overwrite string
	NodePublicIP        string // replaces --public-ip
	NodePublicIPv6      string
}

// KeysFor returns the keys under prefix, normalising it first.
func KeysFor(prefix string) (Keys, error) {
	p, err := NormalizePrefix(prefix)
	if err != nil {
		return Keys{}, err
	}
	return Keys{
		Prefix:              p,
		Managed:             p + "kube-subnet-manager",
		BackendType:         p + "backend-type",
		BackendData:         p + "backend-data",
		BackendV6Data:       p + "backend-v6-data",
		PublicIP:            p + "public-ip",
		PublicIPv6:          p + "public-ipv6",
		PublicIPOverwrite:   p + "public-ip-overwrite",
		PublicIPv6Overwrite: p + "public-ipv6-overwrite",
		NodePublicIP:        p + "node-public-ip",
		NodePublicIPv6:      p + "node-public-ipv6",
	}, nil
}
