package main

import (
	"io"
	"strings"
	"testing"
)

func TestConfig(t *testing.T) {
	o, err := parseFlags([]string{
		"--name=n1", "--data-dir=/tmp/x",
		"--listen-client-urls=http://10.0.0.1:2379,http://127.0.0.1:2379",
		"--advertise-client-urls=http://10.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380",
		"--auto-compaction-retention=5m",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "n1" || cfg.Dir != "/tmp/x" || len(cfg.ListenClientUrls) != 2 ||
		cfg.AdvertiseClientUrls[0].Host != "10.0.0.1:2379" ||
		cfg.InitialCluster != "n1=http://127.0.0.1:2380" ||
		cfg.AutoCompactionMode != "periodic" || cfg.AutoCompactionRetention != "5m" ||
		cfg.TickMs != 50 || cfg.ElectionMs != 500 || cfg.LogLevel != "warn" {
		t.Errorf("config = %+v", cfg)
	}

	// Defaults: advertise what we listen on, the data dir is named after
	// the member.
	o, err = parseFlags([]string{"--name=solo", "--listen-client-urls=http://10.1.1.1:2379"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err = o.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Dir != "solo.etcd" || cfg.AdvertiseClientUrls[0].Host != "10.1.1.1:2379" || cfg.ClusterState != "new" {
		t.Errorf("defaults: dir %q advertise %v state %q", cfg.Dir, cfg.AdvertiseClientUrls, cfg.ClusterState)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--initial-cluster-state=maybe"}, "--initial-cluster-state"},
		{[]string{"--listen-client-urls=10.0.0.1:2379"}, "--listen-client-urls"},
		{[]string{"--listen-client-urls=http://0.0.0.0:2379"}, "--advertise-client-urls"},
		{[]string{"--listen-peer-urls="}, "--listen-peer-urls: no URL"},
		{[]string{"--auto-compaction-retention=often"}, "--auto-compaction-retention"},
		{[]string{"--cert-file=a.pem"}, "--cert-file and --key-file"},
		{[]string{"--cert-file=a.pem", "--key-file=a.key", "--client-cert-auth"}, "--trusted-ca-file"},
		{[]string{"--trusted-ca-file=ca.pem"}, "need --cert-file"},
		{[]string{"--heartbeat-interval=100", "--election-timeout=200"}, "--election-timeout"},
	} {
		o, err := parseFlags(tt.args, io.Discard)
		if err == nil {
			_, err = o.config()
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%v: error %v, want one containing %q", tt.args, err, tt.wantErr)
		}
	}
	if _, err := parseFlags([]string{"stray"}, io.Discard); err == nil {
		t.Error("a positional argument was accepted")
	}
	if _, err := parseFlags([]string{"--no-such-flag"}, io.Discard); err == nil {
		t.Error("an unknown flag was accepted")
	}
}
