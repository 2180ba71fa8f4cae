package main

import (
	"github.com/flannelng/flannel/backend"
)

// backends lists the data planes this binary links.
func backends() backend.Registry {
	return backend.Registry{}
}
