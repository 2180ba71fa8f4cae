//go:build !linux

package ipip

import (
	"errors"

	"github.com/flannelng/flannel/backend"
)

// New checks the config like the Linux version, then fails: the tunnel is
// a Linux kernel device.
func New(cfg backend.Config) (backend.Backend, error) {
	if _, err := ParseOptions(cfg.Raw); err != nil {
		return nil, err
	}
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	return nil, errors.New("the ipip backend needs Linux")
}
