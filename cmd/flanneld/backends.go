package main

import (
	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/backend/alloc"
	"github.com/flannelng/flannel/backend/extension"
	"github.com/flannelng/flannel/backend/hostgw"
	"github.com/flannelng/flannel/backend/ipip"
	"github.com/flannelng/flannel/backend/udp"
	"github.com/flannelng/flannel/backend/vxlan"
	"github.com/flannelng/flannel/backend/wireguard"
)

// backends lists the data planes this binary links.
func backends() backend.Registry {
	return backend.Registry{
		"alloc":     alloc.New,
		"extension": extension.New,
		"host-gw":   hostgw.New,
		"ipip":      ipip.New,
		"udp":       udp.New,
		"vxlan":     vxlan.New,
		"wireguard": wireguard.New,
	}
}
