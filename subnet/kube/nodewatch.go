package kube

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// compact keeps only what flannel reads of a Node, before the Node is
// stored or compared. A kubelet's Node carries images, conditions,
// managed fields and labels, several KB each (the protobuf decoder
// already skips most of it); what is left is a few hundred bytes, so
// 5,000 Nodes cost about a MB, and two versions of a Node that differ
// only in what was dropped compare equal (sameView).
//
// The NetworkUnavailable condition is kept without its times (which move
// on every write), so that Ready can tell it is already set.
func (k Keys) compact(n *Node) *Node {
	c := &Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion},
		Spec:       NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
	}
	for key, v := range n.Annotations {
		if strings.HasPrefix(key, k.Prefix) {
			if c.Annotations == nil {
				c.Annotations = map[string]string{}
			}
			c.Annotations[key] = v
		}
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == conditionType {
			c.Status.Conditions = []NodeCondition{{Type: cond.Type, Status: cond.Status, Reason: cond.Reason}}
		}
	}
	return c
}

// networkCondition is a compact Node's NetworkUnavailable status and reason.
func networkCondition(n *Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == conditionType {
			return string(c.Status) + "/" + c.Reason
		}
	}
	return ""
}

// listPage is how many Nodes one list request asks for, as client-go's
// reflector asks.
const listPage = 500

// watchNodes keeps m.peers' Nodes in step with the API server until ctx
// ends, in this one goroutine: list the Nodes (in pages), replace the set
// with them, then watch from the list's resourceVersion, each event
// decoded and applied as it is read. It does what client-go's reflector
// did for the informer (list, watch, bookmarks, re-list on 410) without
// its three goroutines and two queues between the connection and our
// handler, which cost more CPU than the handler for kubelet heartbeats.
//
//   - The first list asks for resourceVersion "0" (the API server's watch
//     cache, as the reflector asks); a re-list after 410 Gone asks for
//     the current state (""), and Nodes that are gone from it are removed
//     peers: deleted while our watch was down.
//   - A watch that ends (the server's timeout, which we ask to be 5 to
//     10 minutes, or a broken connection) is opened again from the last
//     resourceVersion seen, bookmarks included; with back-off when it
//     failed or ended at once without an event.
//   - Every request's outcome goes to observe: an outage is logged once
//     at its start and once at its end.
func (m *Manager) watchNodes(ctx context.Context) {
	rv := "0"
	b := newBackoff()
	for {
		listed, err := m.listNodes(ctx, rv)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			m.log.Debug("list nodes failed", "err", err)
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				rv = "" // the version we asked for is gone: the current state
			}
			if !b.wait(ctx, nil) {
				return
			}
			continue
		}
		b = newBackoff()
		if !m.followNodes(ctx, listed) {
			return
		}
		rv = "" // 410: re-list at the current state
	}
}

// listNodes lists every Node at version rv, page by page, and makes them
// the set. It returns the list's resourceVersion.
func (m *Manager) listNodes(ctx context.Context, rv string) (string, error) {
	nodes := map[string]*Node{}
	keep := func(n *Node) { nodes[n.Name] = m.keys.compact(n) }
	opts := metav1.ListOptions{ResourceVersion: rv, Limit: listPage}
	for {
		meta, err := m.api.listNodes(ctx, opts, keep)
		m.observe(ctx, "list nodes", err)
		if err != nil && opts.Continue != "" && (apierrors.IsResourceExpired(err) || apierrors.IsGone(err)) {
			// The continue token expired between pages: the whole
			// list in one answer, as client-go's pager falls back.
			clear(nodes)
			opts = metav1.ListOptions{ResourceVersion: rv}
			continue
		}
		if err != nil {
			return "", err
		}
		if meta.Continue == "" {
			m.peers.replace(nodes)
			m.listed()
			return meta.ResourceVersion, nil
		}
		// The next page continues the first one's snapshot.
		opts = metav1.ListOptions{Limit: listPage, Continue: meta.Continue}
	}
}

// followNodes watches the Nodes from rv, and again from the last
// resourceVersion seen each time a watch ends, until ctx ends (false) or
// rv is too old to watch from (true: re-list).
func (m *Manager) followNodes(ctx context.Context, rv string) bool {
	b := newBackoff()
	for {
		timeout := int64(300 + rand.IntN(300))
		w, err := m.api.watchNodes(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true, TimeoutSeconds: &timeout})
		m.observe(ctx, "watch nodes", err)
		events := 0
		if err == nil {
			began := time.Now()
			rv, events, err = m.applyEvents(w, rv)
			w.close()
			if err == nil && events == 0 && time.Since(began) < time.Second {
				err = errors.New("the watch ended at once")
			}
		}
		switch {
		case ctx.Err() != nil:
			return false
		case apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
			m.log.Debug("watch nodes: resource version too old; listing again", "resourceVersion", rv, "err", err)
			return true
		case err == nil:
			b = newBackoff()
			continue // the server's timeout: watch on at once
		}
		m.log.Debug("watch nodes ended", "resourceVersion", rv, "events", events, "err", err)
		if events > 0 {
			b = newBackoff()
		}
		if !b.wait(ctx, nil) {
			return false
		}
	}
}

// applyEvents applies the events of one watch until it ends: nil when
// the server ended it. It returns the last resourceVersion seen.
func (m *Manager) applyEvents(w nodeEvents, rv string) (string, int, error) {
	for events := 0; ; events++ {
		typ, n, err := w.next()
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return rv, events, err
		}
		switch typ {
		case watch.Added, watch.Modified:
			m.peers.upsert(m.keys.compact(n))
		case watch.Deleted:
			m.peers.remove(n.Name)
		case watch.Bookmark:
		default:
			continue // not a version of ours to resume from
		}
		if n.ResourceVersion != "" {
			rv = n.ResourceVersion
		}
	}
}

// observe logs the start of an outage (the server named, with the error)
// and its end (with its length) once each, and any other failure once per
// distinct text: a forbidden list is retried forever too, and the
// operator must see why.
func (r *reporter) observe(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		return // our own cancellation
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil:
		if !r.outage.IsZero() {
			r.log.Info("Kubernetes API server is reachable again", "server", r.server, "outage", time.Since(r.outage).Round(time.Millisecond))
			r.outage = time.Time{}
		}
		clear(r.failed)
	case unreachable(err):
		if r.outage.IsZero() {
			r.outage = time.Now()
			r.log.Error("Kubernetes API server unreachable; the data plane keeps forwarding, retrying with back-off",
				"server", r.server, "request", what, "err", err)
		}
	default:
		if s := err.Error(); !r.failed[s] {
			if r.failed == nil {
				r.failed = map[string]bool{}
			}
			if len(r.failed) < 64 { // bounded: texts with changing details log each time past it
				r.failed[s] = true
			}
			r.log.Error("Kubernetes API request failed", "server", r.server, "request", what, "err", err)
		}
	}
}
