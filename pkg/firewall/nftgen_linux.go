package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// From linux/netfilter/nfnetlink.h and nf_tables.h.
const (
	nfnlSubsysNFTables = 10
	nftMsgGetGen       = 16
	nftMsgNewGen       = 15
	nftaGenID          = 1
)

// NFTablesGeneration returns the nf_tables ruleset generation of the
// caller's network namespace. The kernel bumps it on every change to any
// nf_tables ruleset there (iptables-nft rules included), whoever makes it,
// so a keeper that saw our rules in order at generation g knows they still
// are while the generation is g: one netlink request instead of an
// iptables-save or nft process per table per period.
func NFTablesGeneration() (uint32, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, fmt.Errorf("nf_tables generation: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(2e9))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return 0, fmt.Errorf("nf_tables generation: %w", err)
	}
	// nlmsghdr + nfgenmsg (family AF_UNSPEC, version 0, res_id 0).
	req := make([]byte, 20)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], nfnlSubsysNFTables<<8|nftMsgGetGen)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], 1)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("nf_tables generation: send: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, fmt.Errorf("nf_tables generation: receive: %w", err)
	}
	return parseGenReply(buf[:n])
}

// parseGenReply finds NFTA_GEN_ID in the kernel's NFT_MSG_NEWGEN answer.
func parseGenReply(b []byte) (uint32, error) {
	ne := binary.NativeEndian
	if len(b) < 16 || int(ne.Uint32(b)) > len(b) {
		return 0, errors.New("nf_tables generation: short reply")
	}
	l, typ := int(ne.Uint32(b)), ne.Uint16(b[4:])
	switch {
	case typ == unix.NLMSG_ERROR && l >= 20:
		return 0, fmt.Errorf("nf_tables generation: %w", unix.Errno(-int32(ne.Uint32(b[16:]))))
	case typ != nfnlSubsysNFTables<<8|nftMsgNewGen:
		return 0, fmt.Errorf("nf_tables generation: unexpected reply type %#x", typ)
	}
	attrs := b[20:l] // after nlmsghdr and nfgenmsg
	for len(attrs) >= 4 {
		al, at := int(ne.Uint16(attrs)), ne.Uint16(attrs[2:])&^unix.NLA_F_NESTED
		if al < 4 || al > len(attrs) {
			break
		}
		if at == nftaGenID && al >= 8 {
			return binary.BigEndian.Uint32(attrs[4:8]), nil
		}
		attrs = attrs[(al+3)&^3:]
	}
	return 0, errors.New("nf_tables generation: no NFTA_GEN_ID in the reply")
}

// quietSince lets a keeper skip passes while the ruleset generation has not
// moved since a pass found our rules in order.
type quietSince struct {
	gen func() (uint32, error) // nil: never skip
	at  uint32
	ok  bool
}

// pass runs sync unless the generation says nothing changed since a pass
// found the rules in order. Only a pass that read everything, found it in
// order and wrote nothing lets later passes skip, from the generation read
// before it: any change since shows as a newer one.
func (q *quietSince) pass(sync func() (changed bool, err error)) error {
	var gen uint32
	valid := false
	if q.gen != nil {
		g, err := q.gen()
		if err == nil && q.ok && g == q.at {
			return nil
		}
		gen, valid = g, err == nil
	}
	changed, err := sync()
	q.at, q.ok = gen, valid && err == nil && !changed
	return err
}

// forget makes the next pass a real one (after our own writes).
func (q *quietSince) forget() { q.ok = false }
