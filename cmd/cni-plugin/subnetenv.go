package main

import (
	"fmt"
	"os"

	"github.com/flannelng/flannel/subnet"
)

// subnetEnv is what the daemon tells the plugin about this node through
// subnet.env, read by the one parser of that file (subnet.ParseEnvFile).
type subnetEnv = subnet.EnvFile

// loadSubnetEnv reads and parses the subnet.env file at path. Errors from
// here are wrapped by the callers in upstream's wording, which runbooks grep
// for, so they must name the path but not repeat "subnet.env".
func loadSubnetEnv(path string) (*subnetEnv, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseSubnetEnv(data, path)
}

// parseSubnetEnv parses subnet.env content (subnet.ParseEnvFile: blanks,
// one pair of quotes and booleans in any case accepted, values that mean
// nothing refused) and, as upstream's plugin does, requires every key.
// name is the file path used in error messages.
func parseSubnetEnv(data []byte, name string) (*subnetEnv, error) {
	se, err := subnet.ParseEnvFile(data, name)
	if err != nil {
		return nil, err
	}
	if m := se.Missing(); m != "" {
		return nil, fmt.Errorf("%s is missing %s", name, m)
	}
	return se, nil
}
