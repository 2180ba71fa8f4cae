//go:build !linux

package vxlan

import (
	"errors"

	"github.com/flannelng/flannel/backend"
)

// New fails: vxlan devices are a Linux feature.
func New(backend.Config) (backend.Backend, error) {
	return nil, errors.New("the vxlan backend needs Linux")
}
