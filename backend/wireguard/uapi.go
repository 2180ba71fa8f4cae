package wireguard

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// The userspace device is configured in-process with WireGuard's
// cross-platform configuration protocol (the UAPI text `wg` speaks over
// the socket): https://www.wireguard.com/xplatform/. wgctrl has the same
// codec, but internal to its module.

// uapiSet renders peer changes as the body of a "set=1" operation (without
// the "set=1" line; IpcSet does not want it).
func uapiSet(peers []wgtypes.PeerConfig) string {
	var b strings.Builder
	for _, p := range peers {
		fmt.Fprintf(&b, "public_key=%s\n", hex.EncodeToString(p.PublicKey[:]))
		if p.Remove {
			b.WriteString("remove=true\n")
			continue
		}
		if p.UpdateOnly {
			b.WriteString("update_only=true\n")
		}
		if p.PresharedKey != nil {
			fmt.Fprintf(&b, "preshared_key=%s\n", hex.EncodeToString(p.PresharedKey[:]))
		}
		if p.Endpoint != nil {
			fmt.Fprintf(&b, "endpoint=%s\n", p.Endpoint.AddrPort())
		}
		if p.PersistentKeepaliveInterval != nil {
			fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", int(p.PersistentKeepaliveInterval.Seconds()))
		}
		if p.ReplaceAllowedIPs {
			b.WriteString("replace_allowed_ips=true\n")
		}
		for _, n := range p.AllowedIPs {
			fmt.Fprintf(&b, "allowed_ip=%s\n", n.String())
		}
	}
	return b.String()
}

// uapiDevice is what a "get=1" answer says about a device.
type uapiDevice struct {
	ListenPort int
	HasKey     bool
	PublicKey  wgtypes.Key // derived from the private key; the key itself is not kept
	Peers      []Peer
}

// parseUAPIGet reads the answer of a "get=1" operation.
func parseUAPIGet(s string) (uapiDevice, error) {
	var d uapiDevice
	var cur *Peer
	flush := func() {
		if cur != nil {
			slices.SortFunc(cur.AllowedIPs, comparePrefix)
			d.Peers = append(d.Peers, *cur)
			cur = nil
		}
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return d, fmt.Errorf("uapi: malformed line %q", line)
		}
		key := func() (wgtypes.Key, error) {
			b, err := hex.DecodeString(v)
			if err != nil {
				return wgtypes.Key{}, fmt.Errorf("uapi: %s: %w", k, err)
			}
			return wgtypes.NewKey(b)
		}
		switch k {
		case "errno":
			if v != "0" {
				return d, fmt.Errorf("uapi: errno=%s", v)
			}
		case "private_key":
			pk, err := key()
			if err != nil {
				return d, err
			}
			d.HasKey, d.PublicKey = true, pk.PublicKey()
		case "listen_port":
			n, err := strconv.Atoi(v)
			if err != nil {
				return d, fmt.Errorf("uapi: listen_port: %w", err)
			}
			d.ListenPort = n
		case "public_key":
			flush()
			pk, err := key()
			if err != nil {
				return d, err
			}
			cur = &Peer{Key: pk}
		default:
			if cur == nil {
				continue // fwmark and device-level keys we do not use
			}
			switch k {
			case "preshared_key":
				psk, err := key()
				if err != nil {
					return d, err
				}
				cur.PSK = psk
			case "endpoint":
				ap, err := netip.ParseAddrPort(v)
				if err != nil {
					return d, fmt.Errorf("uapi: endpoint: %w", err)
				}
				cur.Endpoint = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			case "persistent_keepalive_interval":
				n, err := strconv.Atoi(v)
				if err != nil {
					return d, fmt.Errorf("uapi: persistent_keepalive_interval: %w", err)
				}
				cur.Keepalive = time.Duration(n) * time.Second
			case "allowed_ip":
				p, err := netip.ParsePrefix(v)
				if err != nil {
					return d, fmt.Errorf("uapi: allowed_ip: %w", err)
				}
				cur.AllowedIPs = append(cur.AllowedIPs, p.Masked())
			}
		}
	}
	flush()
	return d, sc.Err()
}
