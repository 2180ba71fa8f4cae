package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"

	"github.com/flannelng/flannel/pkg/nsenter"
	"golang.org/x/sys/unix"
)

// maxBatch bounds the writes sent in one sendmsg. The kernel handles the
// messages of a datagram one after the other and acknowledges each, so a
// batch costs two system calls instead of two per write; 128 requests and
// their acknowledgements fit easily in the socket buffers.
const maxBatch = 128

// batchWriter sends the writes a pass makes by the thousand (route,
// neighbour and FDB replaces) on a netlink socket of its own, many per
// datagram, from buffers it reuses. The general-purpose netlink library
// zeroes a 64 KB receive buffer and allocates its request objects for
// every request: at 15,000 writes (5,000 vxlan peers) that was about a
// fifth of the daemon's startup CPU, and most of its garbage.
//
// The messages are those the library would send for the same objects
// (same header flags, same attributes in the same order), so the kernel
// state and the notifications other programs see are the same.
type batchWriter struct {
	mu   sync.Mutex
	fd   int
	seq  uint32
	req  []byte   // the batch being built
	seqs []uint32 // sequence number of each request in req
	rbuf []byte
}

// newBatchWriter opens the socket inside the namespace (see nsenter.Run).
func (h *Handle) newBatchWriter() (*batchWriter, error) {
	var fd int
	err := nsenter.Run(h.ns, h.nsPath, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open netlink socket in %s: %w", h.nsName(), err)
	}
	fail := func(what string, err error) (*batchWriter, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink socket: %s: %w", what, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fail("bind", err)
	}
	// Acknowledgements of failed requests without a copy of the request.
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1); err != nil {
		return fail("NETLINK_CAP_ACK", err)
	}
	tv := unix.NsecToTimeval(requestTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail("SO_RCVTIMEO", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return fail("SO_SNDTIMEO", err)
	}
	return &batchWriter{fd: fd, rbuf: make([]byte, 32<<10)}, nil
}

func (w *batchWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd >= 0 {
		unix.Close(w.fd)
		w.fd = -1
	}
}

// Sizes from linux/netlink.h, linux/rtnetlink.h and linux/neighbour.h.
const (
	nlmsgHdrLen = 16
	rtmsgLen    = 12
	ndmsgLen    = 12
	nlmsgerrLen = 20 // error code and the request's header
)

var native = binary.NativeEndian

// begin starts a request of type typ whose fixed part is body bytes.
func (w *batchWriter) begin(typ uint16, body int) (start int) {
	w.seq++
	start = len(w.req)
	w.req = append(w.req, make([]byte, nlmsgHdrLen+body)...)
	h := w.req[start:]
	native.PutUint16(h[4:], typ)
	native.PutUint16(h[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_REPLACE)
	native.PutUint32(h[8:], w.seq)
	w.seqs = append(w.seqs, w.seq)
	return start
}

// attr appends a route attribute, padded to 4 bytes.
func (w *batchWriter) attr(typ uint16, data []byte) {
	l := 4 + len(data)
	var h [4]byte
	native.PutUint16(h[:], uint16(l))
	native.PutUint16(h[2:], typ)
	w.req = append(w.req, h[:]...)
	w.req = append(w.req, data...)
	for l%4 != 0 {
		w.req = append(w.req, 0)
		l++
	}
}

func (w *batchWriter) end(start int) {
	native.PutUint32(w.req[start:], uint32(len(w.req)-start))
}

func u32(v uint32) []byte {
	var b [4]byte
	native.PutUint32(b[:], v)
	return b[:]
}

// addRoute adds what RouteReplace sends: RTM_NEWROUTE, create|replace,
// in the main table with our protocol mark.
func (w *batchWriter) addRoute(r Route) {
	dst := r.Dst.Masked()
	start := w.begin(unix.RTM_NEWROUTE, rtmsgLen)
	m := w.req[start+nlmsgHdrLen:]
	m[0] = unix.AF_INET
	if dst.Addr().Is6() {
		m[0] = unix.AF_INET6
	}
	m[1] = byte(dst.Bits())
	m[4] = unix.RT_TABLE_MAIN
	m[5] = RouteProtocol
	m[6] = unix.RT_SCOPE_UNIVERSE
	if !r.Gw.IsValid() {
		m[6] = unix.RT_SCOPE_LINK // a connected route
	}
	m[7] = unix.RTN_UNICAST
	if r.OnLink {
		native.PutUint32(m[8:], unix.RTNH_F_ONLINK)
	}
	w.attr(unix.RTA_DST, dst.Addr().AsSlice())
	if r.Gw.IsValid() {
		w.attr(unix.RTA_GATEWAY, r.Gw.AsSlice())
	}
	if r.LinkIndex > 0 {
		w.attr(unix.RTA_OIF, u32(uint32(r.LinkIndex)))
	}
	w.end(start)
}

// addNeigh adds what neighSet sends: a permanent neighbour entry.
func (w *batchWriter) addNeigh(n Neigh) {
	family := byte(unix.AF_INET)
	if n.IP.Is6() {
		family = unix.AF_INET6
	}
	w.addNDMsg(family, n.LinkIndex, 0, unix.RTN_UNICAST, n.IP, n.MAC)
}

// addFDB adds what fdbSet sends: a permanent FDB entry of the vxlan
// device ("bridge fdb replace <mac> dev <dev> dst <ip> self permanent").
func (w *batchWriter) addFDB(f FDB) {
	w.addNDMsg(unix.AF_BRIDGE, f.LinkIndex, unix.NTF_SELF, 0, f.Dst, f.MAC)
}

// addNDMsg adds an RTM_NEWNEIGH for a permanent entry: ndmsg, then the
// destination and the link-layer address.
func (w *batchWriter) addNDMsg(family byte, ifindex int, flags, typ byte, dst netip.Addr, mac MAC) {
	start := w.begin(unix.RTM_NEWNEIGH, ndmsgLen)
	m := w.req[start+nlmsgHdrLen:]
	m[0] = family
	native.PutUint32(m[4:], uint32(ifindex))
	native.PutUint16(m[8:], unix.NUD_PERMANENT)
	m[10], m[11] = flags, typ
	w.attr(unix.NDA_DST, dst.AsSlice())
	w.attr(unix.NDA_LLADDR, mac[:])
	w.end(start)
}

// flush sends the requests added since the last flush and waits for their
// acknowledgements. errs[i] is the kernel's answer to the i-th request
// (nil: done). An error of the socket itself fails every request not yet
// answered.
func (w *batchWriter) flush() (errs []error) {
	n := len(w.seqs)
	if n == 0 {
		return nil
	}
	errs = make([]error, n)
	answered := make([]bool, n)
	first := w.seqs[0]
	defer func() { w.req, w.seqs = w.req[:0], w.seqs[:0] }()
	failAll := func(err error) []error {
		for i := range errs {
			if !answered[i] {
				errs[i] = err
			}
		}
		return errs
	}
	if w.fd < 0 {
		return failAll(errors.New("netlink socket closed"))
	}
	if err := unix.Sendto(w.fd, w.req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return failAll(fmt.Errorf("netlink send: %w", err))
	}
	left := n
	for left > 0 {
		nr, _, err := unix.Recvfrom(w.fd, w.rbuf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return failAll(fmt.Errorf("netlink receive: %w", err))
		}
		b := w.rbuf[:nr]
		for len(b) >= nlmsgHdrLen {
			l := int(native.Uint32(b))
			if l < nlmsgHdrLen || l > len(b) {
				break
			}
			typ, seq := native.Uint16(b[4:]), native.Uint32(b[8:])
			i := int(seq - first)
			if typ == unix.NLMSG_ERROR && l >= nlmsgHdrLen+4 && i >= 0 && i < n && !answered[i] {
				if code := int32(native.Uint32(b[nlmsgHdrLen:])); code != 0 {
					errs[i] = syscall.Errno(-code)
				}
				answered[i] = true
				left--
			}
			b = b[(l+3)&^3:]
		}
	}
	return errs
}

// batchable reports whether writes of kind k go through the batchWriter.
func batchable(k opKind) bool { return k == opRouteSet || k == opNeighSet || k == opFDBSet }

// setBatch runs replace writes (route, neighbour and FDB; at most maxBatch)
// and returns the outcome of each. Without a batch socket (it could not be
// opened) it falls back to one request at a time.
func (h *Handle) setBatch(ops []op) []error {
	w := h.batch()
	if w == nil {
		errs := make([]error, len(ops))
		for i := range ops {
			errs[i] = h.exec(&ops[i])
		}
		return errs
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range ops {
		o := &ops[i]
		switch o.kind {
		case opRouteSet:
			w.addRoute(o.route)
		case opNeighSet:
			w.addNeigh(Neigh{LinkIndex: o.link, IP: o.ip, MAC: o.mac})
		case opFDBSet:
			w.addFDB(FDB{LinkIndex: o.link, MAC: o.mac, Dst: o.ip})
		default:
			panic("setBatch: not a replace write: " + o.String())
		}
	}
	h.writes.Add(uint64(len(ops)))
	return w.flush()
}

// batch returns the Handle's batch writer, opening it on first use; nil
// when it cannot be opened (logged by the caller's fallback errors, if
// any: the per-request path still works).
func (h *Handle) batch() *batchWriter {
	h.bwMu.Lock()
	defer h.bwMu.Unlock()
	if h.bw == nil && !h.bwFailed {
		w, err := h.newBatchWriter()
		if err != nil {
			h.bwFailed = true
			return nil
		}
		h.bw = w
	}
	return h.bw
}

// exec runs one write with the per-request netlink path.
func (h *Handle) exec(o *op) error {
	switch o.kind {
	case opRouteSet:
		return h.RouteReplace(o.route)
	case opRouteDel:
		return h.routeDel(o.oldRt())
	case opNeighSet:
		return h.neighSet(Neigh{LinkIndex: o.link, IP: o.ip, MAC: o.mac})
	case opNeighDel:
		return h.neighDel(o.nk())
	case opFDBSet:
		return h.fdbSet(FDB{LinkIndex: o.link, MAC: o.mac, Dst: o.ip})
	default: // opFDBDelPre, opFDBDel
		return h.fdbDel(FDB{LinkIndex: o.link, MAC: o.mac, Dst: o.ip})
	}
}
