//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Exec runs `ip netns exec ns cmd...` and returns its combined output. The
// error includes the output.
func (l *Lab) Exec(ctx context.Context, ns string, cmd ...string) (string, error) {
	if len(cmd) == 0 {
		return "", errors.New("exec: no command")
	}
	c := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, cmd...)...)
	c.WaitDelay = time.Second
	out, err := c.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(cmd, " "), ns, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Ping sends count echo requests from the namespace fromNS to `to` and fails,
// with ping's output, unless all are answered. Each reply is awaited at most
// a second.
func (l *Lab) Ping(ctx context.Context, fromNS string, to netip.Addr, count int) error {
	if count < 1 {
		count = 1
	}
	args := []string{"ping", "-n", "-q", "-c", strconv.Itoa(count), "-W", "1", "-i", "0.2"}
	if to.Is6() && !to.Is4In6() {
		args = append(args, "-6")
	} else {
		args = append(args, "-4")
	}
	args = append(args, to.Unmap().String())
	out, err := l.Exec(ctx, fromNS, args...)
	if err != nil {
		return fmt.Errorf("ping %s from %s: %w", to, fromNS, err)
	}
	if !strings.Contains(out, ", 0% packet loss") {
		return fmt.Errorf("ping %s from %s: loss: %s", to, fromNS, strings.TrimSpace(out))
	}
	return nil
}

// TCPTransfer listens on `to` (port chosen by the kernel) inside toNS,
// connects from inside fromNS, sends n bytes of a known pattern and checks
// that exactly those bytes arrived. ctx bounds the whole transfer.
func (l *Lab) TCPTransfer(ctx context.Context, fromNS, toNS string, to netip.Addr, n int) error {
	if n < 0 {
		return fmt.Errorf("tcp transfer: negative byte count %d", n)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
	}
	what := fmt.Sprintf("tcp %s -> %s (%s)", fromNS, to, toNS)
	var ln net.Listener
	err := InNS(toNS, func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(to.Unmap(), 0).String())
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: listen: %w", what, err)
	}
	defer ln.Close()
	dst := ln.Addr().String()

	type result struct {
		n   int64
		err error
	}
	recv := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			recv <- result{err: err}
			return
		}
		defer c.Close()
		stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
		defer stop()
		got, err := io.Copy(&patternChecker{}, c)
		recv <- result{n: got, err: err}
	}()

	var conn net.Conn
	err = InNS(fromNS, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, "tcp", dst)
		return err
	})
	if err != nil {
		ln.Close()
		<-recv
		return fmt.Errorf("%s: dial %s: %w", what, dst, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	_, werr := io.Copy(conn, io.LimitReader(&patternReader{}, int64(n)))
	if werr == nil {
		werr = conn.(*net.TCPConn).CloseWrite()
	}
	var r result
	select {
	case r = <-recv:
	case <-ctx.Done():
		ln.Close()
		r = <-recv
	}
	stop()
	conn.Close()
	if werr != nil {
		return fmt.Errorf("%s: send: %w", what, werr)
	}
	if r.err != nil {
		return fmt.Errorf("%s: receive after %d bytes: %w", what, r.n, r.err)
	}
	if r.n != int64(n) {
		return fmt.Errorf("%s: sent %d bytes, received %d", what, n, r.n)
	}
	return nil
}

// patternReader yields the repeating bytes 0, 1, ..., 250; a prime period
// catches reordered or duplicated segments that a power of two could hide.
type patternReader struct{ off int64 }

const patternPeriod = 251

func (p *patternReader) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte((p.off + int64(i)) % patternPeriod)
	}
	p.off += int64(len(b))
	return len(b), nil
}

type patternChecker struct{ off int64 }

func (p *patternChecker) Write(b []byte) (int, error) {
	for i, c := range b {
		if want := byte((p.off + int64(i)) % patternPeriod); c != want {
			return i, fmt.Errorf("byte %d is %d, want %d", p.off+int64(i), c, want)
		}
	}
	p.off += int64(len(b))
	return len(b), nil
}

// WaitFor polls cond every 50 ms until it returns nil, for at most timeout
// (and not past ctx). The error names what was awaited and cond's last
// error. A cond that returns Permanent(err) ends the wait at once (say, the
// daemon that should write a file has exited).
func (l *Lab) WaitFor(ctx context.Context, timeout time.Duration, what string, cond func() error) error {
	return WaitFor(ctx, timeout, what, cond)
}

// WaitFor is Lab.WaitFor without a lab.
func WaitFor(ctx context.Context, timeout time.Duration, what string, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	start := time.Now()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var pe *permanentError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s: gave up after %s: %w", what, time.Since(start).Round(time.Millisecond), pe.err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not reached after %s: %w", what, time.Since(start).Round(time.Millisecond), err)
		case <-t.C:
		}
	}
}

// Permanent wraps an error a WaitFor condition returns to stop waiting.
func Permanent(err error) error { return &permanentError{err} }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }
