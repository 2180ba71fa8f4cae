package main

import (
	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/backend/alloc"
)

// backends lists the data planes this binary links.
func backends() backend.Registry {
	return backend.Registry{
		"alloc": alloc.New,
	}
}
