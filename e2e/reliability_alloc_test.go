//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
	"github.com/flannelng/flannel/subnet"
)

// joiners is how many daemons start at the same moment.
const joiners = 100

// A hundred daemons (one per lab host) start at the same moment on a /16
// with /24 subnets: every one gets its own subnet, none overlap, none
// exits, and etcd holds exactly one lease per key (lost races leave no
// granted lease behind).
func TestPrivilegedReliabilityConcurrentJoins(t *testing.T) {
	l, cli := newLab(t, joiners, `{"Network":"10.5.0.0/16","SubnetLen":24,"Backend":{"Type":"alloc"}}`)
	hosts := l.Hosts()
	procs := make([]*lab.Process, len(hosts))
	// All spawned in parallel: a sequential loop would spread the starts
	// over seconds while the first daemons eat the CPU.
	start := time.Now()
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() { procs[i], errs[i] = l.StartFlanneld(h, "--iptables-forward-rules=false") })
	}
	wg.Wait()
	spawned := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	envs := make([]subnet.Env, len(hosts))
	ctx := testCtx(t, 3*time.Minute)
	err := l.WaitFor(ctx, 2*time.Minute, "every host's subnet.env", func() error {
		missing := 0
		for i, h := range hosts {
			if envs[i].Subnet.IsValid() {
				continue
			}
			if procs[i].Exited() {
				return lab.Permanent(fmt.Errorf("%s: flanneld exited:\n%s", h.Name, procs[i].Log()))
			}
			if e, err := subnet.ReadEnvFile(h.SubnetFile()); err == nil {
				envs[i] = e
			} else {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d hosts without a lease", missing)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	all := time.Since(start)

	keys := leases(t, cli, "/coreos.com/network")
	if len(keys) != joiners {
		t.Errorf("%d leases for %d daemons", len(keys), joiners)
	}
	var subnets []netip.Prefix
	owner := map[string]string{}
	for i, h := range hosts {
		sn := envs[i].Subnet.Masked()
		for j, other := range subnets {
			if sn.Overlaps(other) {
				t.Errorf("%s holds %s, overlapping %s of %s", h.Name, sn, other, hosts[j].Name)
			}
		}
		subnets = append(subnets, sn)
		if sn.Bits() != 24 || !mustPrefix("10.5.0.0/16").Contains(sn.Addr()) {
			t.Errorf("%s holds %s, not a /24 of the network", h.Name, sn)
		}
		r, ok := keys["/coreos.com/network/subnets/"+subnet.MakeKey(sn, netip.Prefix{})]
		if !ok {
			t.Errorf("%s: subnet.env says %s but etcd has no such lease", h.Name, sn)
			continue
		}
		if v := string(r.Kvs[0].Value); !strings.Contains(v, `"PublicIP":"`+h.IP.String()+`"`) {
			t.Errorf("%s: lease %s is %s", h.Name, sn, v)
		}
		owner[sn.String()] = h.Name
	}
	resp, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Leases) != joiners {
		t.Errorf("etcd holds %d leases for %d keys", len(resp.Leases), joiners)
	}
	exited := 0
	for i, p := range procs {
		if p.Exited() {
			exited++
			t.Errorf("%s: flanneld exited:\n%s", hosts[i].Name, p.Log())
		}
	}
	figure(t, "concurrent-joins", "%d daemons started at once (spawned in %s): all held a lease %s after the first start; %d distinct /24s, no overlap, %d etcd leases, %d exits",
		joiners, ms(spawned), ms(all), len(owner), len(resp.Leases), exited)
}

// Six daemons on a network with room for four subnets: four get one, the
// other two say why they cannot ("out of subnets ...") and stay not ready
// on /readyz; when a node leaves (daemon stopped, its lease deleted) one of
// them takes the freed subnet within seconds.
func TestPrivilegedReliabilityExhaustion(t *testing.T) {
	const cfg = `{"Network":"10.5.0.0/16","SubnetLen":24,"SubnetMin":"10.5.1.0","SubnetMax":"10.5.4.0","Backend":{"Type":"alloc"}}`
	const outOf = "out of subnets: no free IPv4 /24 subnet in range 10.5.1.0 ... 10.5.4.0 (4 leases exist)"
	l, cli := newLab(t, 6, cfg)
	hosts := l.Hosts()
	procs := make([]*lab.Process, len(hosts))
	for i, h := range hosts {
		p, err := l.StartFlanneld(h, "--healthz-port=8471")
		if err != nil {
			t.Fatal(err)
		}
		procs[i] = p
	}
	ctx := testCtx(t, 90*time.Second)
	readyz := func(h *lab.Host) int {
		code, _, err := httpGet(l, "http://"+net.JoinHostPort(h.IP.String(), "8471")+"/readyz")
		if err != nil {
			return 0
		}
		return code
	}
	var holders, waiters []int
	err := l.WaitFor(ctx, 30*time.Second, "four leases and two clear refusals", func() error {
		holders, waiters = nil, nil
		for i, h := range hosts {
			if procs[i].Exited() {
				return lab.Permanent(fmt.Errorf("%s: flanneld exited:\n%s", h.Name, procs[i].Log()))
			}
			if _, err := os.Stat(h.SubnetFile()); err == nil {
				holders = append(holders, i)
			} else if strings.Contains(procs[i].Log(), outOf) {
				waiters = append(waiters, i)
			}
		}
		if len(holders) != 4 || len(waiters) != 2 {
			return fmt.Errorf("%d hold a lease, %d refused", len(holders), len(waiters))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range waiters {
		if code := readyz(hosts[i]); code != 503 {
			t.Errorf("%s without a subnet: /readyz %d, want 503", hosts[i].Name, code)
		}
	}
	for _, i := range holders {
		if code := readyz(hosts[i]); code != 200 {
			t.Errorf("%s with a subnet: /readyz %d, want 200", hosts[i].Name, code)
		}
	}
	t.Logf("refusal: %s", logLines(procs[waiters[0]].Log(), "out of subnets")[0])

	// A node leaves for good: its daemon stops first, so it cannot re-create
	// its key, then its lease is deleted.
	gone := holders[0]
	freed := waitEnv(t, l, hosts[gone], nil, time.Second).Subnet.Masked()
	if _, err := procs[gone].Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "/coreos.com/network/subnets/"+subnet.MakeKey(freed, netip.Prefix{})); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	taker := -1
	err = l.WaitFor(ctx, 15*time.Second, "a waiting node takes "+freed.String(), func() error {
		for _, i := range waiters {
			if e, err := subnet.ReadEnvFile(hosts[i].SubnetFile()); err == nil {
				if e.Subnet.Masked() != freed {
					return lab.Permanent(fmt.Errorf("%s got %s, want the freed %s", hosts[i].Name, e.Subnet, freed))
				}
				taker = i
				return nil
			}
		}
		return fmt.Errorf("nobody yet")
	})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(deleted)
	if code := readyz(hosts[taker]); code != 200 {
		t.Errorf("%s after taking %s: /readyz %d, want 200", hosts[taker].Name, freed, code)
	}
	for _, i := range waiters {
		if i != taker {
			if code := readyz(hosts[i]); code != 503 {
				t.Errorf("%s still without a subnet: /readyz %d, want 503", hosts[i].Name, code)
			}
		}
	}
	for i, p := range procs {
		if i != gone && p.Exited() {
			t.Errorf("%s: flanneld exited:\n%s", hosts[i].Name, p.Log())
		}
	}
	figure(t, "exhaustion", "4 of 6 daemons leased, 2 refused (%q, /readyz 503); freed subnet taken %s after the delete", outOf, ms(took))
}
