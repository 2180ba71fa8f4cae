package daemon

import (
	"fmt"
	"strings"
)

// systemd shows the last STATUS= line a service sent in `systemctl status`,
// next to its state: while the unit is "activating" (flanneld sends READY=1
// only once its lease is held and the data plane programmed) it says what
// the daemon waits for, and once it runs, how many peers it programmed.
// The lines go through Deps.Notify, like READY=1.

// setStatus sends a STATUS= line. A failure is logged at debug level only:
// READY=1, sent the same way, reports a socket that does not work.
func (n *node) setStatus(msg string) { sendStatus(n.d, msg) }

func sendStatus(d Deps, msg string) {
	// One line: systemd shows the text as it is, and a multi-line error
	// would break the datagram's KEY=VALUE framing.
	msg = strings.Join(strings.Fields(msg), " ")
	if _, err := d.Notify("STATUS=" + msg); err != nil {
		d.Log.Debug("Could not send the status to systemd", "status", msg, "err", err)
	}
}

// waitingForSource is the status while the lease source does not answer.
func waitingForSource(source string) string { return "Waiting for " + source }

// waitingForLease is the status while Acquire retries: in Kubernetes mode
// the lease is the Node's podCIDR, which the controller manager assigns
// (subnet/kube reports "no spec.podCIDR" until then).
func waitingForLease(err error) string {
	if strings.Contains(err.Error(), "podCIDR") {
		return "Waiting for podCIDR: " + err.Error()
	}
	return "Waiting for a subnet lease: " + err.Error()
}

// peersProgrammed is the status of a running daemon.
func peersProgrammed(n int) string {
	if n == 1 {
		return "1 peer programmed"
	}
	return fmt.Sprintf("%d peers programmed", n)
}
