//go:build linux

package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flannelng/flannel/pkg/lab"
	"github.com/flannelng/flannel/subnet"
)

// The wireguard tests run on the userspace device (this machine's kernel
// has no WireGuard module; Implementation "auto" falls back to it).
//
// Every lab host shares the machine's /run, but a node has its own: each
// flanneld runs in a private mount namespace with <host dir>/wg bound on
// /run/wireguard, so each has its own UAPI socket
// /run/wireguard/flannel-wg.sock, which the test reaches at
// <host dir>/wg/flannel-wg.sock. The key file is <host dir>/wgkey.

const wgConfig = `{"Network":"10.5.0.0/16","Backend":{"Type":"wireguard"}}`

func wgKeyFile(h *lab.Host) string { return filepath.Join(h.Dir, "wgkey") }

func wgSock(h *lab.Host, dev string) string { return filepath.Join(h.Dir, "wg", dev+".sock") }

// startWGFlanneld runs flanneld on h as StartFlanneld does, in its own
// mount namespace with its own /run/wireguard.
func startWGFlanneld(t *testing.T, l *lab.Lab, h *lab.Host, args ...string) *lab.Process {
	t.Helper()
	if err := os.MkdirAll("/run/wireguard", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(h.Dir, "wg"), 0o700); err != nil {
		t.Fatal(err)
	}
	argv := []string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" /run/wireguard && shift && exec "$@"`, "sh", filepath.Join(h.Dir, "wg"),
		l.Binaries().Flanneld, "--etcd-endpoints=" + l.EtcdEndpoint(), "--subnet-file=" + h.SubnetFile()}
	argv = append(argv, args...)
	p, err := l.StartProcess(h.NS, filepath.Join(h.Dir, "flanneld.log"), []string{"WIREGUARD_KEY_FILE=" + wgKeyFile(h)}, argv...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func startWGCluster(t *testing.T, o lab.Options, netConfig string, args ...string) *cluster {
	t.Helper()
	l, _ := newLabOpts(t, o, netConfig)
	c := &cluster{l: l}
	for _, h := range l.Hosts() {
		c.procs = append(c.procs, startWGFlanneld(t, l, h, args...))
	}
	ctx := testCtx(t, 60*time.Second)
	for i, h := range l.Hosts() {
		c.envs = append(c.envs, waitEnv(t, l, h, c.procs[i], 30*time.Second))
		pod, err := l.AddPod(ctx, h, "p1")
		if err != nil {
			t.Fatal(err)
		}
		c.pods = append(c.pods, pod)
	}
	return c
}

// uapi sends one request to a userspace device's UAPI socket and returns
// the answer (up to the blank line).
func uapi(sock, req string) (string, error) {
	conn, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte(req)); err != nil {
		return "", err
	}
	var b strings.Builder
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		if sc.Text() == "" {
			break
		}
		b.WriteString(sc.Text() + "\n")
	}
	out := b.String()
	if !strings.Contains(out, "errno=0") {
		return out, fmt.Errorf("uapi %q: %s", req, out)
	}
	return out, sc.Err()
}

// wgPeers returns a device's peers: public key (base64) → allowed IPs and
// endpoint, as `wg show` would print them.
func wgPeers(t *testing.T, sock string) map[string]string {
	t.Helper()
	out, err := uapi(sock, "get=1\n\n")
	if err != nil {
		t.Fatal(err)
	}
	peers := map[string]string{}
	cur := ""
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "public_key":
			b, _ := hex.DecodeString(v)
			cur = base64.StdEncoding.EncodeToString(b)
			peers[cur] = ""
		case "endpoint", "allowed_ip":
			if cur != "" {
				peers[cur] += k + "=" + v + " "
			}
		}
	}
	return peers
}

// leaseKey reads the PublicKey of BackendData (or BackendV6Data) of the
// lease of the node whose subnet.env is env.
func leaseKey(t *testing.T, l *lab.Lab, env subnet.Env, v6 bool) string {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	cli, err := l.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := "/coreos.com/network/subnets/" + subnet.Lease{Subnet: env.Subnet, IPv6Subnet: env.IPv6Subnet}.Key()
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("lease %s: %v", key, err)
	}
	var v struct {
		BackendType string
		BackendData struct {
			PublicKey string
			Port      int
		}
		BackendV6Data struct {
			PublicKey string
			Port      int
		}
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &v); err != nil {
		t.Fatal(err)
	}
	if v.BackendType != "wireguard" {
		t.Fatalf("lease %s: %s", key, resp.Kvs[0].Value)
	}
	if v6 {
		if v.BackendV6Data.Port != 51821 {
			t.Errorf("lease %s: %s, want BackendV6Data.Port 51821", key, resp.Kvs[0].Value)
		}
		return v.BackendV6Data.PublicKey
	}
	if v.BackendData.Port != 51820 {
		t.Errorf("lease %s: %s, want Port 51820", key, resp.Kvs[0].Value)
	}
	return v.BackendData.PublicKey
}

func TestPrivilegedWireguard(t *testing.T) {
	c := startWGCluster(t, lab.Options{Hosts: 3}, wgConfig)
	h1, h2, h3 := c.l.Hosts()[0], c.l.Hosts()[1], c.l.Hosts()[2]
	if c.envs[0].MTU != 1420 {
		t.Errorf("FLANNEL_MTU %d, want 1420 (1500 - 80)", c.envs[0].MTU)
	}
	if err := contains(c.procs[0].Log(), "using the embedded userspace WireGuard (wireguard-go)", "generated a new wireguard private key"); err != nil {
		t.Errorf("log: %v", err)
	}

	// Pods reach each other, and on the underlay there is nothing but
	// WireGuard's UDP between the hosts: no pod address in any header.
	ctx := testCtx(t, 120*time.Second)
	var frames []capturedFrame
	var capErr error
	var wg sync.WaitGroup
	wg.Add(1)
	stopCap := make(chan struct{})
	go func() {
		defer wg.Done()
		frames, capErr = captureUnderlay(h1.NS, stopCap)
	}()
	time.Sleep(200 * time.Millisecond)
	wgPingAll(t, c, false)
	if err := c.l.TCPTransfer(ctx, c.pods[0].NS, c.pods[2].NS, c.pods[2].IP, 4<<20); err != nil {
		t.Fatal(err)
	}
	close(stopCap)
	wg.Wait()
	if capErr != nil {
		t.Fatal(capErr)
	}
	checkUnderlay(t, frames, []netip.Addr{h1.IP, h2.IP, h3.IP}, mustPrefix("10.5.0.0/16"), netip.Prefix{}, 51820)

	// Devices, routes and the key file as documented.
	out, _ := c.l.Exec(ctx, h1.NS, "ip", "-d", "link", "show", "flannel-wg")
	if err := contains(out, "mtu 1420", "tun type tun"); err != nil {
		t.Errorf("device: %v\n%s", err, out)
	}
	out, _ = c.l.Exec(ctx, h1.NS, "ip", "route", "show", "dev", "flannel-wg")
	if err := contains(out, "10.5.0.0/16 proto 45 scope link"); err != nil {
		t.Errorf("route: %v\n%s", err, out)
	}
	out, _ = c.l.Exec(ctx, h1.NS, "ip", "addr", "show", "dev", "flannel-wg")
	if err := contains(out, "inet "+c.envs[0].Subnet.Masked().Addr().String()+"/32"); err != nil {
		t.Errorf("address: %v\n%s", err, out)
	}
	if m := fileMode(t, wgKeyFile(h1)); m != 0o400 {
		t.Errorf("key file mode %v, want 0400", m)
	}
	keys := make([]string, 3)
	for i := range keys {
		keys[i] = leaseKey(t, c.l, c.envs[i], false)
	}
	peers := wgPeers(t, wgSock(h1, "flannel-wg"))
	if len(peers) != 2 || !strings.Contains(peers[keys[1]], "allowed_ip="+c.envs[1].Subnet.String()) ||
		!strings.Contains(peers[keys[1]], "endpoint="+h2.IP.String()+":51820") {
		t.Errorf("h1's peers %v, want h2 (%s) and h3 (%s)", peers, keys[1], keys[2])
	}

	// A peer removed by hand (`wg set flannel-wg peer <key> remove`) is
	// back within a second or two.
	raw, _ := base64.StdEncoding.DecodeString(keys[1])
	if _, err := uapi(wgSock(h1, "flannel-wg"), "set=1\npublic_key="+hex.EncodeToString(raw)+"\nremove=true\n\n"); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	if err := c.l.WaitFor(ctx, 5*time.Second, "peer repaired", func() error {
		if _, ok := wgPeers(t, wgSock(h1, "flannel-wg"))[keys[1]]; !ok {
			return fmt.Errorf("peer %s still missing", keys[1])
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(removed); d > 2500*time.Millisecond {
		t.Errorf("peer repaired after %v, want about a second", d)
	}
	if err := c.l.Ping(ctx, c.pods[0].NS, c.pods[1].IP, 1); err != nil {
		t.Errorf("after repair: %v", err)
	}

	// Foreign and malformed leases are skipped, each with one log line.
	cli, err := c.l.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"/coreos.com/network/subnets/10.5.250.0-24": `{"PublicIP":"172.30.0.99","BackendType":"wireguard","BackendData":{"PublicKey":"not-a-key","Port":51820}}`,
		"/coreos.com/network/subnets/10.5.251.0-24": `{"PublicIP":"172.30.0.98","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:01"}}`,
	} {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3 * time.Second) // a few peer checks and passes
	if err := c.l.Ping(ctx, c.pods[0].NS, c.pods[2].IP, 1); err != nil {
		t.Errorf("with a malformed lease: %v", err)
	}
	logText := c.procs[0].Log()
	if n := strings.Count(logText, `malformed PublicKey \"not-a-key\"`) + strings.Count(logText, `malformed PublicKey "not-a-key"`); n != 1 {
		t.Errorf("malformed lease logged %d times, want once", n)
	}
	if n := strings.Count(logText, "Ignoring non-wireguard subnet: type=vxlan"); n != 1 {
		t.Errorf("vxlan lease logged %d times, want once", n)
	}
	if len(wgPeers(t, wgSock(h1, "flannel-wg"))) != 2 {
		t.Errorf("skipped leases became peers")
	}

	// A restart keeps the key: same public key in the lease, and traffic
	// flows again.
	if code, err := c.procs[1].Stop(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("stop h2: %d %v", code, err)
	}
	c.procs[1] = startWGFlanneld(t, c.l, h2)
	waitEnv(t, c.l, h2, c.procs[1], 30*time.Second)
	if err := c.l.WaitFor(ctx, 30*time.Second, "h2 ready again", func() error {
		return contains(c.procs[1].Log(), "using the wireguard private key from the key file", "flannel is ready")
	}); err != nil {
		t.Fatal(err)
	}
	if k := leaseKey(t, c.l, c.envs[1], false); k != keys[1] {
		t.Errorf("h2's key changed over a restart: %s -> %s", keys[1], k)
	}
	if strings.Contains(c.procs[1].Log(), mustReadKey(t, h2)) {
		t.Errorf("the private key is in the log")
	}
	wgPingAll(t, c, false)

	// A key that changes (a reboot empties /run): peers drop the old
	// entry and use the new one.
	if code, err := c.procs[2].Stop(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("stop h3: %d %v", code, err)
	}
	if err := os.Remove(wgKeyFile(h3)); err != nil {
		t.Fatal(err)
	}
	c.procs[2] = startWGFlanneld(t, c.l, h3)
	waitEnv(t, c.l, h3, c.procs[2], 30*time.Second)
	var newKey string
	if err := c.l.WaitFor(ctx, 30*time.Second, "h3's new key on h1", func() error {
		newKey = leaseKey(t, c.l, c.envs[2], false)
		p := wgPeers(t, wgSock(h1, "flannel-wg"))
		if _, ok := p[keys[2]]; ok || newKey == keys[2] {
			return fmt.Errorf("old key %s still a peer of h1 (%v)", keys[2], p)
		}
		if _, ok := p[newKey]; !ok || len(p) != 2 {
			return fmt.Errorf("h1's peers %v", p)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wgPingAll(t, c, false)

	// A corrupt key file is an error that names the file; it is not
	// replaced.
	if code, err := c.procs[2].Stop(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("stop h3: %d %v", code, err)
	}
	os.Chmod(wgKeyFile(h3), 0o600)
	if err := os.WriteFile(wgKeyFile(h3), []byte("garbage!"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startWGFlanneld(t, c.l, h3)
	code, err := p.Wait(30 * time.Second)
	if err != nil || code != 1 {
		t.Fatalf("flanneld with a corrupt key: exit %d %v\n%s", code, err, p.Log())
	}
	if err := contains(p.Log(), "could not parse private key from file "+wgKeyFile(h3)); err != nil {
		t.Errorf("%v\n%s", err, p.Log())
	}
	if b, _ := os.ReadFile(wgKeyFile(h3)); string(b) != "garbage!" {
		t.Errorf("corrupt key file rewritten: %q", b)
	}
}

func mustReadKey(t *testing.T, h *lab.Host) string {
	t.Helper()
	b, err := os.ReadFile(wgKeyFile(h))
	if err != nil || len(b) != 44 {
		t.Fatalf("key file %s: %d bytes, %v", wgKeyFile(h), len(b), err)
	}
	return string(b)
}

func TestPrivilegedWireguardDualStack(t *testing.T) {
	c := startWGCluster(t, lab.Options{Hosts: 3, IPv6: true},
		`{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fd00:10::/56","Backend":{"Type":"wireguard","PersistentKeepaliveInterval":25}}`, "--iface=eth0")
	h1, h2, h3 := c.l.Hosts()[0], c.l.Hosts()[1], c.l.Hosts()[2]
	stopCap := make(chan struct{})
	var frames []capturedFrame
	var capErr error
	done := make(chan struct{})
	go func() { defer close(done); frames, capErr = captureUnderlay(h1.NS, stopCap) }()
	time.Sleep(200 * time.Millisecond)
	wgPingAll(t, c, false)
	wgPingAll(t, c, true)
	ctx := testCtx(t, 60*time.Second)
	if err := c.l.TCPTransfer(ctx, c.pods[0].NS, c.pods[1].NS, c.pods[1].IPv6, 2<<20); err != nil {
		t.Fatal(err)
	}
	close(stopCap)
	<-done
	if capErr != nil {
		t.Fatal(capErr)
	}
	checkUnderlay(t, frames, []netip.Addr{h1.IP, h2.IP, h3.IP, h1.IPv6, h2.IPv6, h3.IPv6}, mustPrefix("10.5.0.0/16"), mustPrefix("fd00:10::/56"), 51820, 51821)
	out, _ := c.l.Exec(ctx, h1.NS, "ip", "-6", "route", "show", "dev", "flannel-wg-v6")
	if err := contains(out, "fd00:10::/56 proto 45"); err != nil {
		t.Errorf("v6 route: %v\n%s", err, out)
	}
	k6 := leaseKey(t, c.l, c.envs[1], true)
	if k4 := leaseKey(t, c.l, c.envs[1], false); k4 != k6 {
		t.Errorf("v4 key %s, v6 key %s: one key for both devices", k4, k6)
	}
	peers := wgPeers(t, wgSock(h1, "flannel-wg-v6"))
	if !strings.Contains(peers[k6], "endpoint=["+h2.IPv6.String()+"]:51821") || !strings.Contains(peers[k6], "allowed_ip="+c.envs[1].IPv6Subnet.String()) {
		t.Errorf("h1's v6 peers %v", peers)
	}
	out, _ = uapi(wgSock(h1, "flannel-wg-v6"), "get=1\n\n")
	if !strings.Contains(out, "persistent_keepalive_interval=25") {
		t.Errorf("keepalive not set:\n%s", out)
	}
}

type capturedFrame struct {
	src, dst netip.Addr
	proto    int // IP protocol of the outer header
	sport    int
	dport    int
	icmpType int
}

// captureUnderlay records the IP headers of every frame on eth0 of ns
// (an AF_PACKET socket: the machine has no tcpdump) until stop closes.
func captureUnderlay(ns string, stop <-chan struct{}) ([]capturedFrame, error) {
	var fd int
	err := lab.InNS(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			unix.Close(fd)
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w", ns, err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Usec: 100000}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	var out []capturedFrame
	buf := make([]byte, 65536)
	for {
		select {
		case <-stop:
			return out, nil
		default:
		}
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		if f, ok := parseFrame(buf[:n]); ok {
			out = append(out, f)
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func parseFrame(b []byte) (capturedFrame, bool) {
	if len(b) < 14 {
		return capturedFrame{}, false
	}
	var f capturedFrame
	p := b[14:]
	var l4 []byte
	switch binary.BigEndian.Uint16(b[12:14]) {
	case 0x0800:
		if len(p) < 20 {
			return f, false
		}
		f.src, _ = netip.AddrFromSlice(p[12:16])
		f.dst, _ = netip.AddrFromSlice(p[16:20])
		f.proto = int(p[9])
		l4 = p[int(p[0]&0xf)*4:]
	case 0x86dd:
		if len(p) < 40 {
			return f, false
		}
		f.src, _ = netip.AddrFromSlice(p[8:24])
		f.dst, _ = netip.AddrFromSlice(p[24:40])
		f.proto = int(p[6])
		l4 = p[40:]
	default:
		return f, false
	}
	switch {
	case (f.proto == unix.IPPROTO_UDP || f.proto == unix.IPPROTO_TCP) && len(l4) >= 4:
		f.sport, f.dport = int(binary.BigEndian.Uint16(l4[0:2])), int(binary.BigEndian.Uint16(l4[2:4]))
	case f.proto == unix.IPPROTO_ICMPV6 && len(l4) >= 1:
		f.icmpType = int(l4[0])
	}
	return f, true
}

// checkUnderlay: no frame names a pod address, and between hosts there is
// only UDP from and to the WireGuard ports (and IPv6 neighbour discovery).
func checkUnderlay(t *testing.T, frames []capturedFrame, hosts []netip.Addr, pods4, pods6 netip.Prefix, ports ...int) {
	t.Helper()
	isHost := map[netip.Addr]bool{}
	for _, h := range hosts {
		isHost[h] = true
	}
	isPort := map[int]bool{}
	for _, p := range ports {
		isPort[p] = true
	}
	wg, bad := 0, 0
	for _, f := range frames {
		for _, a := range []netip.Addr{f.src, f.dst} {
			if (pods4.IsValid() && pods4.Contains(a)) || (pods6.IsValid() && pods6.Contains(a)) {
				bad++
				if bad < 5 {
					t.Errorf("underlay frame with a pod address: %+v", f)
				}
			}
		}
		if !isHost[f.src] || !isHost[f.dst] {
			continue // etcd traffic with the fabric
		}
		switch {
		case f.proto == unix.IPPROTO_UDP && isPort[f.sport] && isPort[f.dport]:
			wg++
		case f.proto == unix.IPPROTO_ICMPV6 && f.icmpType >= 133 && f.icmpType <= 137:
		default:
			bad++
			if bad < 5 {
				t.Errorf("host-to-host frame that is not WireGuard: %+v", f)
			}
		}
	}
	if wg < 100 {
		t.Errorf("captured %d WireGuard frames among %d, want the pods' traffic", wg, len(frames))
	}
	t.Logf("underlay capture: %d frames, %d WireGuard", len(frames), wg)
}

// wgPingAll is pingAll with room for WireGuard's handshake: an initiation
// that reaches a peer before that peer knows our key is dropped, and the
// initiator tries again only after REKEY_TIMEOUT (5 s, plus jitter), so on
// a loaded machine a pair can need two or three rounds before its first
// packet passes. Connectivity is what is checked, not its latency.
func wgPingAll(t *testing.T, c *cluster, v6 bool) {
	t.Helper()
	ctx := testCtx(t, 3*time.Minute)
	for _, a := range c.pods {
		for _, b := range c.pods {
			if a == b {
				continue
			}
			dst := b.IP
			if v6 {
				dst = b.IPv6
			}
			if err := c.l.WaitFor(ctx, 30*time.Second, fmt.Sprintf("ping %s -> %s", a.NS, dst), func() error {
				return c.l.Ping(ctx, a.NS, dst, 1)
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
}
