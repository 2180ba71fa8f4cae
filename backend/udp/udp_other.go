//go:build !linux

package udp

import (
	"errors"

	"github.com/flannelng/flannel/backend"
)

// New checks the config like the Linux version, then fails: the relay
// needs Linux's TUN driver.
func New(cfg backend.Config) (backend.Backend, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	if _, err := ParseOptions(cfg.Raw); err != nil {
		return nil, err
	}
	return nil, errors.New("the udp backend needs Linux")
}
