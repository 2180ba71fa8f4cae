package main

import (
	"log/slog"
	"reflect"
	"strings"
)

// redacted stands for a secret in the start-up config line.
const redacted = "<redacted>"

// configAttrs is the effective configuration (command line, FLANNELD_*
// variables and defaults, after parsing) as log attributes, one per field
// of config, as upstream logs its "CLI flags config" at start. Secrets are
// redacted: any field whose name ends in "Password" (the etcd password);
// file paths (the password file, TLS keys) are logged, never their
// contents, which config does not hold. Fields are read by reflection so
// that a new flag shows up without anyone remembering to add it here.
func configAttrs(c *config) []any {
	var attrs []any
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := range t.NumField() {
			f, fv := t.Field(i), v.Field(i)
			if !f.IsExported() {
				continue
			}
			name := prefix + f.Name
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(name+".", fv)
			case strings.HasSuffix(f.Name, "Password"):
				if !fv.IsZero() {
					attrs = append(attrs, slog.String(name, redacted))
				} else {
					attrs = append(attrs, slog.String(name, ""))
				}
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.String:
				attrs = append(attrs, slog.String(name, strings.Join(fv.Interface().([]string), ",")))
			default:
				attrs = append(attrs, slog.Any(name, fv.Interface()))
			}
		}
	}
	walk("", reflect.ValueOf(c).Elem())
	return attrs
}
