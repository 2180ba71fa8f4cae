//go:build linux

package main

import (
	"io"
	"slices"
	"testing"
	"time"
)

func TestParseFleetFlags(t *testing.T) {
	env := func(string) string { return "" }
	o, err := parseFlags(nil, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	f := o.fleet
	if !f.on || !slices.Equal(f.storms, []int{100, 1000}) || !slices.Equal(f.idleNs, []int{1000, 5000}) || f.window != 2*time.Minute ||
		f.churn != 0.1 || f.poll || f.daemons != 100 || f.stormTimeout != 10*time.Minute {
		t.Errorf("defaults: %+v", f)
	}
	o, err = parseFlags([]string{"--fleet-storms", "10", "--fleet-idle-ns", "10,20", "--fleet-idle", "2s", "--fleet-churn", "0.5",
		"--fleet-poll", "--fleet-daemons", "3", "--fleet-storm-timeout", "1m"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	f = o.fleet
	if !slices.Equal(f.storms, []int{10}) || !slices.Equal(f.idleNs, []int{10, 20}) || f.window != 2*time.Second || f.churn != 0.5 ||
		!f.poll || f.daemons != 3 || f.stormTimeout != time.Minute {
		t.Errorf("%+v", f)
	}
	if o, err := parseFlags([]string{"--fleet-storms=", "--fleet-idle-ns="}, env, io.Discard); err != nil || len(o.fleet.storms) != 0 || len(o.fleet.idleNs) != 0 {
		t.Errorf("empty lists: %+v %v", o.fleet, err)
	}
	if o, err := parseFlags([]string{"--fleet=false"}, env, io.Discard); err != nil || o.fleet.on {
		t.Errorf("--fleet=false: %+v %v", o.fleet, err)
	}
	for _, bad := range [][]string{
		{"--fleet-storms", "0"}, {"--fleet-idle-ns", "x"}, {"--fleet-idle", "-1s"}, {"--fleet-churn", "1.5"},
		{"--fleet-churn", "-0.1"}, {"--fleet-daemons", "1001"}, {"--fleet-storm-timeout", "0"},
	} {
		if _, err := parseFlags(bad, env, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
