package udp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// socketBuffer is the receive and send buffer we ask for: a burst of
// packets from many peers must not overflow the socket while the relay
// goroutine is busy writing into the TUN.
const socketBuffer = 4 << 20

// errorLogInterval bounds how often one relay direction logs I/O errors;
// the counters in Stats count them all.
const errorLogInterval = 30 * time.Second

// relay moves packets between flannel0 and the UDP socket: one goroutine
// per direction, each with its own buffers, so the per-packet path
// allocates nothing.
type relay struct {
	*forwarder
	log  *slog.Logger
	conn *net.UDPConn
	rc   syscall.RawConn // conn's, for sendmmsg and recvmmsg

	dev    atomic.Pointer[tunFile]
	devSet chan struct{} // signalled when dev changes

	// lost reports that the device went away (MarkDirty of the kernel
	// reconciler, so that the next pass recreates it).
	lost func(reason string)

	stopOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
	started  bool

	tunErrLog, udpErrLog rateLog
}

func newRelay(network netip.Prefix, log *slog.Logger) *relay {
	return &relay{
		forwarder: newForwarder(network),
		log:       log,
		devSet:    make(chan struct{}, 1),
		stop:      make(chan struct{}),
		lost:      func(string) {},
	}
}

// listenUDP opens the relay's socket on addr. It must run in the target
// namespace.
func listenUDP(addr netip.AddrPort) (*net.UDPConn, syscall.RawConn, error) {
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, nil, fmt.Errorf("failed to start listening on UDP socket %s: %w", addr, err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("UDP socket %s: %w", addr, err)
	}
	_ = rc.Control(func(fd uintptr) {
		// The FORCE variants pass net.core.[rw]mem_max (we have
		// CAP_NET_ADMIN); otherwise fall back to what is allowed.
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuffer)
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBuffer) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, socketBuffer)
		}
	})
	return conn, rc, nil
}

// setDevice makes t the device the relay uses and closes the previous one.
func (r *relay) setDevice(t *tunFile) {
	if old := r.dev.Swap(t); old != nil && old != t {
		old.f.Close()
	}
	select {
	case r.devSet <- struct{}{}:
	default:
	}
}

// detach closes the current device descriptor.
func (r *relay) detach() { r.setDevice(nil) }

// start runs the two relay goroutines.
func (r *relay) start() {
	if r.started {
		return
	}
	r.started = true
	r.wg.Add(2)
	go func() { defer r.wg.Done(); r.tunLoop() }()
	go func() { defer r.wg.Done(); r.udpLoop() }()
}

// close stops the goroutines and closes the socket and the descriptor.
// The device stays (it is persistent).
func (r *relay) close() {
	r.stopOnce.Do(func() {
		close(r.stop)
		if r.conn != nil {
			r.conn.Close()
		}
		r.detach()
		r.wg.Wait()
	})
}

func (r *relay) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// tunLoop reads packets from flannel0 and sends them to their peers, a
// batch at a time.
func (r *relay) tunLoop() {
	in := newTUNReader()
	out := newUDPSender()
	icmp := make([]byte, maxICMPError)
	for {
		d := r.dev.Load()
		if d == nil {
			if !r.waitDevice(nil) {
				return
			}
			continue
		}
		n, err := in.read(d.rc)
		if err != nil {
			if r.stopped() {
				return
			}
			if r.dev.Load() == d {
				r.deviceLost(d, err)
			}
			if !r.waitDevice(d) {
				return
			}
			continue
		}
		r.pumpTUN(d, in, n, out, icmp)
	}
}

// pumpTUN handles n packets read from flannel0: the ones with a route go
// out in one sendmmsg, ICMP errors go straight back into the device.
func (r *relay) pumpTUN(d *tunFile, in *tunReader, n int, out *udpSender, icmp []byte) {
	for i := 0; i < n; i++ {
		pkt := in.packet(i)
		v, hop, m := r.fromTUN(pkt, icmp)
		switch v {
		case forward:
			out.add(pkt, hop)
		case reply:
			if _, err := d.f.Write(icmp[:m]); err != nil {
				r.st.tunErrors.Add(1)
				r.tunErrLog.log(r.log, "could not write an ICMP error into "+DeviceName, err)
			}
		}
	}
	queued := out.n
	sent, err := out.flush(r.rc)
	r.st.sent.Add(uint64(sent))
	if failed := queued - sent; failed > 0 {
		r.st.sendErrors.Add(uint64(failed))
		r.udpErrLog.log(r.log, "could not send packets to a peer", err)
	}
}

// udpLoop receives datagrams, a batch at a time, and writes their payload
// into flannel0.
func (r *relay) udpLoop() {
	in := newUDPReceiver()
	for {
		n, err := in.receive(r.rc)
		if err != nil {
			if r.stopped() || errors.Is(err, net.ErrClosed) {
				return
			}
			r.udpErrLog.log(r.log, "could not receive from the UDP socket", err)
			// Never spin on a persistent error.
			select {
			case <-r.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		for i := 0; i < n; i++ {
			pkt, ok := in.datagram(i)
			if !ok {
				r.st.received.Add(1)
				r.st.rejected.Add(1)
				continue
			}
			r.pumpUDP(pkt)
		}
	}
}

// pumpUDP handles one datagram.
func (r *relay) pumpUDP(pkt []byte) {
	if r.fromUDP(pkt) != forward {
		return
	}
	d := r.dev.Load()
	if d == nil {
		r.st.tunErrors.Add(1)
		return
	}
	if _, err := d.f.Write(pkt); err != nil {
		r.st.tunErrors.Add(1)
		r.tunErrLog.log(r.log, "could not write a packet into "+DeviceName, err)
		return
	}
	r.st.delivered.Add(1)
}

// deviceLost records that reads from d fail, once per descriptor.
func (r *relay) deviceLost(d *tunFile, err error) {
	if !d.broken.CompareAndSwap(false, true) {
		return
	}
	r.st.deviceLosses.Add(1)
	r.log.Warn("TUN device unusable; it will be recreated", "device", DeviceName, "err", err)
	r.lost(fmt.Sprintf("reading %s failed: %v", DeviceName, err))
}

// waitDevice waits until the relay's device is no longer old. It reports
// false when the relay stops.
func (r *relay) waitDevice(old *tunFile) bool {
	for {
		if d := r.dev.Load(); d != old && d != nil {
			return true
		}
		select {
		case <-r.stop:
			return false
		case <-r.devSet:
		case <-time.After(time.Second):
		}
	}
}

// Stats returns the relay's counters.
func (r *relay) Stats() Stats { return r.st.snapshot() }

// rateLog logs one message per interval and counts the rest.
type rateLog struct {
	last       atomic.Int64 // unix nanoseconds of the last line
	suppressed atomic.Uint64
}

func (l *rateLog) log(log *slog.Logger, msg string, err error) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(errorLogInterval) || !l.last.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return
	}
	log.Warn(msg, "err", err, "similar_errors_suppressed", l.suppressed.Swap(0))
}
