//go:build linux

package etcdv2_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/etcdv2"
	"github.com/flannelng/flannel/pkg/lab"
)

// startV2 runs etcd 3.5 with the v2 API in a lab and returns a client.
func startV2(t *testing.T) (*lab.Lab, *etcdv2.Client) {
	t.Helper()
	lab.SkipUnlessPrivileged(t)
	var bins lab.Binaries
	lab.RequireEtcdV2Binary(t, &bins)
	l := lab.NewT(t, lab.Options{Binaries: bins})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.StartEtcdV2(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := l.EtcdV2()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return l, c
}

const (
	prefix = "/coreos.com/network"
	lease1 = prefix + "/subnets/10.244.82.0-24"
	value1 = `{"PublicIP":"10.210.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d7"}}`
	value2 = `{"PublicIP":"10.210.0.2","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d8"}}`
)

// TestPrivilegedV2Server proves the client against a real etcd 3.5 with
// --enable-v2: the operations v0.11 uses and the ones a migrating node
// needs, with etcd's own answers.
func TestPrivilegedV2Server(t *testing.T) {
	_, c := startV2(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("list before any lease", func(t *testing.T) {
		_, err := c.Get(ctx, prefix+"/subnets", true)
		var e *etcdv2.Error
		if !etcdv2.IsKeyNotFound(err) || !errors.As(err, &e) || e.Index == 0 || e.HTTPStatus != 404 {
			t.Fatalf("list of a missing directory: %#v, want code 100 with the cursor", err)
		}
	})

	t.Run("create if absent", func(t *testing.T) {
		r, err := c.Create(ctx, lease1, value1, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if r.Action != etcdv2.ActionCreate || r.Node.Value != value1 || r.Node.TTL != 86400 ||
			r.Node.Expiration == nil || r.Node.CreatedIndex != r.Node.ModifiedIndex || r.Index != r.Node.ModifiedIndex {
			t.Errorf("create: %+v node %+v", r, r.Node)
		}
		if time.Until(*r.Node.Expiration) < 23*time.Hour {
			t.Errorf("expiration %v is not 24 h away", r.Node.Expiration)
		}
		_, err = c.Create(ctx, lease1, value2, 24*time.Hour)
		var e *etcdv2.Error
		if !etcdv2.IsNodeExist(err) || !errors.As(err, &e) || e.HTTPStatus != 412 {
			t.Fatalf("second create: %v, want code 105 (HTTP 412)", err)
		}
		g, err := c.Get(ctx, lease1, false)
		if err != nil || g.Node.Value != value1 {
			t.Fatalf("after a lost create: %+v, %v", g, err)
		}
	})

	t.Run("renew replaces the node", func(t *testing.T) {
		before, err := c.Get(ctx, lease1, false)
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.Set(ctx, lease1, value1, etcdv2.SetOptions{TTL: 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		// spec 2.2: an unconditional set makes createdIndex = modifiedIndex = new index.
		if r.Action != etcdv2.ActionSet || r.Node.CreatedIndex != r.Node.ModifiedIndex ||
			r.Node.ModifiedIndex <= before.Node.ModifiedIndex || r.PrevNode == nil || r.PrevNode.Value != value1 {
			t.Errorf("renew: %+v node %+v prev %+v", r, r.Node, r.PrevNode)
		}
	})

	t.Run("update needs the key", func(t *testing.T) {
		r, err := c.Update(ctx, lease1, value1, 24*time.Hour)
		if err != nil || r.Action != etcdv2.ActionUpdate {
			t.Fatalf("update: %+v, %v", r, err)
		}
		if _, err := c.Update(ctx, prefix+"/subnets/10.244.99.0-24", value1, time.Hour); !etcdv2.IsKeyNotFound(err) {
			t.Errorf("update of a missing key: %v, want code 100", err)
		}
	})

	t.Run("reservation has no TTL", func(t *testing.T) {
		key := prefix + "/subnets/10.244.150.0-24"
		r, err := c.Set(ctx, key, `{"PublicIP":"10.210.0.9"}`, etcdv2.SetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Node.TTL != 0 || r.Node.Expiration != nil {
			t.Errorf("reservation got a TTL: %+v", r.Node)
		}
	})

	t.Run("compare and swap", func(t *testing.T) {
		g, err := c.Get(ctx, lease1, false)
		if err != nil {
			t.Fatal(err)
		}
		idx := g.Node.ModifiedIndex
		if _, err := c.Set(ctx, lease1, value2, etcdv2.SetOptions{TTL: time.Hour, PrevIndex: idx + 100}); !etcdv2.IsCompareFailed(err) {
			t.Fatalf("swap with a wrong index: %v, want code 101", err)
		}
		if _, err := c.Set(ctx, lease1, value2, etcdv2.SetOptions{TTL: time.Hour, PrevValue: "nope"}); !etcdv2.IsCompareFailed(err) {
			t.Fatalf("swap with a wrong value: %v, want code 101", err)
		}
		r, err := c.Set(ctx, lease1, value1, etcdv2.SetOptions{TTL: 24 * time.Hour, PrevIndex: idx, PrevValue: value1})
		if err != nil || r.Action != etcdv2.ActionCompareAndSwap {
			t.Fatalf("swap: %+v, %v", r, err)
		}
		if _, err := c.Delete(ctx, lease1, etcdv2.DeleteOptions{PrevIndex: idx}); !etcdv2.IsCompareFailed(err) {
			t.Errorf("delete with a stale index: %v, want code 101", err)
		}
	})

	t.Run("list", func(t *testing.T) {
		r, err := c.Get(ctx, prefix+"/subnets", true)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Node.Dir || len(r.Node.Nodes) != 2 || r.Index == 0 {
			t.Fatalf("list: %+v with %d nodes", r, len(r.Node.Nodes))
		}
	})

	t.Run("ttl expires", func(t *testing.T) {
		key := prefix + "/subnets/10.244.200.0-24"
		r, err := c.Create(ctx, key, value2, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		w, err := c.Watch(ctx, key, false, r.Node.ModifiedIndex)
		if err != nil {
			t.Fatal(err)
		}
		// spec 2.2: an expire event's node has no value; prevNode has it.
		if w.Action != etcdv2.ActionExpire || w.Node.Value != "" || w.PrevNode == nil || w.PrevNode.Value != value2 {
			t.Errorf("expire event: %+v node %+v prev %+v", w, w.Node, w.PrevNode)
		}
		if _, err := c.Get(ctx, key, false); !etcdv2.IsKeyNotFound(err) {
			t.Errorf("expired key: %v, want code 100", err)
		}
	})

	t.Run("recursive watch", func(t *testing.T) {
		l, err := c.Get(ctx, prefix+"/subnets", true)
		if err != nil {
			t.Fatal(err)
		}
		cursor := l.Index
		key := prefix + "/subnets/10.244.201.0-24"
		if _, err := c.Create(ctx, key, value2, time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Delete(ctx, key, etcdv2.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		var actions []string
		for range 2 {
			w, err := c.Watch(ctx, prefix+"/subnets", true, cursor)
			if err != nil {
				t.Fatal(err)
			}
			if w.Node.Key != key {
				t.Errorf("event on %s, want %s", w.Node.Key, key)
			}
			actions = append(actions, w.Action)
			cursor = w.Node.ModifiedIndex
		}
		if got := strings.Join(actions, ","); got != "create,delete" {
			t.Errorf("events %s, want create,delete", got)
		}
		// A bounded poll with nothing to report ends with its context.
		pctx, pcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer pcancel()
		if _, err := c.Watch(pctx, prefix+"/subnets", true, cursor); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("idle watch: %v, want the deadline", err)
		}
		// An event elsewhere in the store does not wake a watcher of subnets.
		go func() {
			time.Sleep(100 * time.Millisecond)
			c.Set(ctx, prefix+"/other", "x", etcdv2.SetOptions{})
			c.Set(ctx, key, value1, etcdv2.SetOptions{TTL: time.Hour})
		}()
		w, err := c.Watch(ctx, prefix+"/subnets", true, cursor)
		if err != nil || w.Node.Key != key || w.Action != etcdv2.ActionSet {
			t.Errorf("watch across an unrelated write: %+v, %v", w, err)
		}
	})

	t.Run("index cleared after 1000 events", func(t *testing.T) {
		l, err := c.Get(ctx, prefix+"/subnets", true)
		if err != nil {
			t.Fatal(err)
		}
		old := l.Index
		// spec 2.4: the history is the last 1000 events of the whole
		// store, so writes to an unrelated key push a lease's out.
		for i := range 1100 {
			if _, err := c.Set(ctx, "/unrelated", fmt.Sprint(i), etcdv2.SetOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		_, err = c.Watch(ctx, prefix+"/subnets", true, old)
		var e *etcdv2.Error
		if !etcdv2.IsIndexCleared(err) || !errors.As(err, &e) || e.HTTPStatus != 400 || e.Index < old+1100 {
			t.Fatalf("watch from before 1100 writes: %#v, want code 401 (HTTP 400) with the current index", err)
		}
		t.Logf("index cleared: %v", err)
		// Re-list, then the watch goes on from the list's cursor.
		l, err = c.Get(ctx, prefix+"/subnets", true)
		if err != nil {
			t.Fatal(err)
		}
		key := prefix + "/subnets/10.244.202.0-24"
		if _, err := c.Create(ctx, key, value2, time.Hour); err != nil {
			t.Fatal(err)
		}
		w, err := c.Watch(ctx, prefix+"/subnets", true, l.Index)
		if err != nil || w.Node.Key != key || w.Action != etcdv2.ActionCreate {
			t.Errorf("watch after the re-list: %+v, %v", w, err)
		}
	})
}
