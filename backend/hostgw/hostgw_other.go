//go:build !linux

package hostgw

import (
	"errors"

	"github.com/flannelng/flannel/backend"
)

// New checks the config like the Linux version, then fails: routes are
// programmed through Linux netlink.
func New(cfg backend.Config) (backend.Backend, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	return nil, errors.New("the host-gw backend needs Linux")
}
