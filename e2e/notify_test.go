package e2e

import (
	"net"
	"strings"
	"time"
)

// readNotify returns the next sd_notify datagram that is not a STATUS=
// line, and the STATUS= texts read on the way (flanneld sends "Waiting
// for etcd at ...", "N peers programmed" and the like before and after
// READY=1).
func readNotify(sock *net.UnixConn, timeout time.Duration) (msg string, status []string, err error) {
	sock.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1024)
	for {
		n, err := sock.Read(buf)
		if err != nil {
			return "", status, err
		}
		s := string(buf[:n])
		if st, ok := strings.CutPrefix(s, "STATUS="); ok {
			status = append(status, st)
			continue
		}
		return s, status, nil
	}
}
