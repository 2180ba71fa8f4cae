package udp

import (
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchSize is how many packets one pass of a relay goroutine moves: up
// to this many TUN reads feed one sendmmsg, and one recvmmsg returns up to
// this many datagrams. System calls dominate the relay's cost (each packet
// costs a TUN read and write anyway), so batching the socket side cuts them
// nearly in half under load; when packets trickle in, a batch is one packet
// and nothing waits for a batch to fill.
const batchSize = 32

// The callbacks below run inside syscall.RawConn.Read/Write. They are
// created once per batch object, so a pass allocates nothing.

// tunReader reads up to batchSize packets from a TUN descriptor: the first
// read waits for the descriptor through Go's poller, the following ones
// take only what is already queued.
type tunReader struct {
	bufs [][]byte
	lens []int
	n    int
	err  error
	fn   func(fd uintptr) bool
}

func newTUNReader() *tunReader {
	r := &tunReader{bufs: make([][]byte, batchSize), lens: make([]int, batchSize)}
	for i := range r.bufs {
		// The TUN device hands out packets up to its MTU; a full-size
		// buffer means no packet is ever truncated whatever the MTU. Pages
		// never written stay unbacked.
		r.bufs[i] = make([]byte, maxPacket)
	}
	r.fn = r.readFD
	return r
}

func (r *tunReader) readFD(fd uintptr) bool {
	for r.n < len(r.bufs) {
		n, err := unix.Read(int(fd), r.bufs[r.n])
		if err != nil {
			if err == unix.EAGAIN || err == unix.EINTR {
				break
			}
			r.err = err
			return true
		}
		r.lens[r.n] = n
		r.n++
	}
	return r.n > 0 // false: nothing queued, wait for the poller
}

// read fills the buffers; it returns the number of packets read, and an
// error only when none was.
func (r *tunReader) read(rc syscall.RawConn) (int, error) {
	r.n, r.err = 0, nil
	if err := rc.Read(r.fn); err != nil {
		return 0, err
	}
	if r.n > 0 {
		return r.n, nil
	}
	return 0, r.err
}

// packet returns the i-th packet of the last read.
func (r *tunReader) packet(i int) []byte { return r.bufs[i][:r.lens[i]] }

// udpSender sends a batch of datagrams, each to its own peer, with
// sendmmsg.
type udpSender struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	addrs []unix.RawSockaddrInet4
	n     int // queued
	sent  int // done (sent or failed) in the current flush
	// Per flush: datagrams the kernel refused, and the last reason.
	failed  int
	lastErr error
	fn      func(fd uintptr) bool
}

func newUDPSender() *udpSender {
	s := &udpSender{
		hdrs:  make([]unix.Mmsghdr, batchSize),
		iovs:  make([]unix.Iovec, batchSize),
		addrs: make([]unix.RawSockaddrInet4, batchSize),
	}
	for i := range s.hdrs {
		s.addrs[i].Family = unix.AF_INET
		s.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&s.addrs[i]))
		s.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		s.hdrs[i].Hdr.Iov = &s.iovs[i]
		s.hdrs[i].Hdr.SetIovlen(1)
	}
	s.fn = s.sendFD
	return s
}

// add queues pkt for hop; pkt must stay untouched until flush.
func (s *udpSender) add(pkt []byte, hop netip.AddrPort) {
	i := s.n
	s.iovs[i].Base = &pkt[0]
	s.iovs[i].SetLen(len(pkt))
	a := &s.addrs[i]
	a.Addr = hop.Addr().As4()
	port := (*[2]byte)(unsafe.Pointer(&a.Port))
	port[0], port[1] = byte(hop.Port()>>8), byte(hop.Port())
	s.n++
}

func (s *udpSender) sendFD(fd uintptr) bool {
	for s.sent < s.n {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&s.hdrs[s.sent])), uintptr(s.n-s.sent), 0, 0, 0)
		switch {
		case errno == unix.EAGAIN:
			return false // socket buffer full: wait until writable
		case errno == unix.EINTR:
		case errno != 0:
			// The first datagram of the rest failed (sendmmsg reports an
			// error only for the first): skip it.
			s.failed++
			s.lastErr = errno
			s.sent++
		default:
			s.sent += int(r)
		}
	}
	return true
}

// flush sends the queued datagrams and reports how many went out.
func (s *udpSender) flush(rc syscall.RawConn) (sent int, err error) {
	if s.n == 0 {
		return 0, nil
	}
	s.sent, s.failed, s.lastErr = 0, 0, nil
	werr := rc.Write(s.fn)
	sent = s.sent - s.failed
	if werr == nil {
		werr = s.lastErr
	}
	s.n = 0
	for i := range s.iovs {
		s.iovs[i].Base = nil // no reference to old buffers
	}
	return sent, werr
}

// udpReceiver receives up to batchSize datagrams with recvmmsg.
type udpReceiver struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	bufs [][]byte
	n    int
	err  error
	fn   func(fd uintptr) bool
}

func newUDPReceiver() *udpReceiver {
	r := &udpReceiver{
		hdrs: make([]unix.Mmsghdr, batchSize),
		iovs: make([]unix.Iovec, batchSize),
		bufs: make([][]byte, batchSize),
	}
	for i := range r.hdrs {
		r.bufs[i] = make([]byte, maxPacket)
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(maxPacket)
		r.hdrs[i].Hdr.Iov = &r.iovs[i]
		r.hdrs[i].Hdr.SetIovlen(1)
	}
	r.fn = r.recvFD
	return r
}

func (r *udpReceiver) recvFD(fd uintptr) bool {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd,
		uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)), unix.MSG_DONTWAIT, 0, 0)
	switch errno {
	case 0:
		r.n = int(n)
		return true
	case unix.EAGAIN, unix.EINTR:
		return false
	default:
		r.err = errno
		return true
	}
}

// receive fills the buffers; it returns the number of datagrams.
func (r *udpReceiver) receive(rc syscall.RawConn) (int, error) {
	r.n, r.err = 0, nil
	if err := rc.Read(r.fn); err != nil {
		return 0, err
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.n, nil
}

// datagram returns the i-th datagram of the last receive. A datagram
// longer than the buffer (impossible for IPv4 over UDP) is dropped by the
// caller through its length check: MSG_TRUNC marks it.
func (r *udpReceiver) datagram(i int) ([]byte, bool) {
	h := &r.hdrs[i]
	if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
		return nil, false
	}
	return r.bufs[i][:h.Len], true
}
