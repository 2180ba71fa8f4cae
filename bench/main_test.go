//go:build linux

package main

import (
	"io"
	"slices"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	o, err := parseFlags(nil, env(map[string]string{"LAB_BIN_DIR": "/opt/bin"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.binDir != "/opt/bin" || !slices.Equal(o.ks, []int{100, 1000, 5000}) || !slices.Equal(o.backends, []string{"vxlan", "host-gw"}) ||
		o.burst != 100 || o.changes != 1000 || o.runs != 1 || o.idle != 30*time.Second || o.throughput != 5*time.Second ||
		o.kube != 5000 || o.kubeUpd != 10000 || o.kubeRate != 500 {
		t.Errorf("defaults: %+v", o)
	}
	o, err = parseFlags([]string{"--ks", "5000", "--k20000", "--backends", "host-gw", "--runs", "2", "--idle", "0",
		"--daemon-env", "GOGC=50", "--bin", "b", "--kube", "0"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.binDir != "b" || !slices.Equal(o.ks, []int{5000, 20000}) || !slices.Equal(o.backends, []string{"host-gw"}) ||
		o.runs != 2 || o.idle != 0 || !slices.Equal(o.daemonEnv, []string{"GOGC=50"}) || o.kube != 0 {
		t.Errorf("%+v", o)
	}
	if o, err := parseFlags([]string{"--ks="}, env(nil), io.Discard); err != nil || len(o.ks) != 0 {
		t.Errorf("empty --ks: %+v %v", o.ks, err)
	}
	for _, bad := range [][]string{
		{"--backends", "udp"}, {"--ks", "10,x"}, {"--ks", "0"}, {"--runs", "0"}, {"--burst", "-1"},
		{"--throughput", "500ms"}, {"--daemon-env", "GOGC"}, {"--ks", "39000"}, {"extra"},
		{"--kube", "-1"}, {"--kube", "39001"}, {"--kube-updates", "-5"}, {"--kube-rate", "-1"},
	} {
		if _, err := parseFlags(bad, env(nil), io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
