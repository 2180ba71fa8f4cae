//go:build !linux

package wireguard

import (
	"errors"

	"github.com/flannelng/flannel/backend"
)

// New checks the config like the Linux version, then fails: devices and
// routes are programmed through Linux netlink.
func New(cfg backend.Config) (backend.Backend, error) {
	if _, err := ParseOptions(cfg.Raw); err != nil {
		return nil, err
	}
	return nil, errors.New("the wireguard backend needs Linux")
}
