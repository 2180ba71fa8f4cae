package kube

import (
	"context"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// compact is the informer's transform: it keeps only what flannel reads of
// a Node, before the Node is stored or handed to a handler. A kubelet's
// Node carries images, conditions, managed fields and labels, several KB
// each; what is left is a few hundred bytes, so 5,000 Nodes cost about a
// MB, and two versions of a Node that differ only in what was dropped
// compare equal (sameView).
//
// The NetworkUnavailable condition is kept without its times (which move
// on every write), so that Ready can tell it is already set.
func (k Keys) compact(obj any) (any, error) {
	n, ok := obj.(*Node)
	if !ok {
		return obj, nil // DeletedFinalStateUnknown holds an object already compacted
	}
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
	return c, nil
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

// listWatch is the informer's source: every Node, through api, with each
// call's outcome reported to observe, which logs an outage once at its
// start and once at its end (client-go retries silently, spec 7.2).
type listWatch struct {
	*cache.ListWatch
	// noWatchList turns off client-go's streaming list (WatchListClient)
	// for fakes that cannot send its bookmark. Against a real server it
	// stays on: the initial Nodes arrive one by one and are compacted
	// one by one, instead of one list of full Nodes held in memory at
	// once.
	noWatchList bool
}

func (lw listWatch) IsWatchListSemanticsUnSupported() bool { return lw.noWatchList }

func (m *Manager) listWatch() cache.ListerWatcher {
	return listWatch{
		ListWatch: &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
				l, err := m.api.listNodes(ctx, opts)
				m.observe(ctx, "list nodes", err)
				if err != nil {
					return nil, err
				}
				return l, nil
			},
			WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
				w, err := m.api.watchNodes(ctx, opts)
				m.observe(ctx, "watch nodes", err)
				return w, err
			},
		},
		noWatchList: m.noWatchList,
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
