package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"sigs.k8s.io/yaml"
)

// Output formats of the commands that print tables (leases, migrate-v2):
// table (the default), wide (the table with more columns), json and yaml
// (the same objects: yaml is converted from the json, so the keys and the
// nulls are the same).
var outputFormats = []string{"table", "wide", "json", "yaml"}

// outputHelp is the -o flags' help text.
var outputHelp = "output format: " + strings.Join(outputFormats, ", ")

// checkOutput rejects an unknown -o value as a usage error.
func checkOutput(format string) error {
	for _, f := range outputFormats {
		if format == f {
			return nil
		}
	}
	return usageError{fmt.Sprintf("invalid -o %q: want %s", format, strings.Join(outputFormats, ", "))}
}

// isTable reports whether format is one of the tables.
func isTable(format string) bool { return format == "table" || format == "wide" }

// renderData writes v as indented JSON or as YAML.
func renderData(w io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// renderList writes views (etcd keys or Nodes) as json or yaml, [] when
// empty.
func renderList[V any](w io.Writer, format string, views []V) error {
	if views == nil {
		views = []V{}
	}
	return renderData(w, format, views)
}
