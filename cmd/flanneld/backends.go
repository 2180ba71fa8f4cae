package main

import (
	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/backend/alloc"
	"github.com/flannelng/flannel/backend/hostgw"
	"github.com/flannelng/flannel/backend/udp"
	"github.com/flannelng/flannel/backend/vxlan"
)

// backends lists the data planes this binary links.
func backends() backend.Registry {
	return backend.Registry{
		"alloc":   alloc.New,
		"host-gw": hostgw.New,
		"udp":     udp.New,
		"vxlan":   vxlan.New,
	}
}
