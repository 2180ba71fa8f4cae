package etcdv2

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// PrevExist is the prevExist condition of a Set.
type PrevExist string

const (
	PrevIgnore  PrevExist = ""      // no condition (v0.11's set and renewal)
	PrevExists  PrevExist = "true"  // the key must exist (action update)
	PrevNoExist PrevExist = "false" // the key must not exist (action create)
)

// SetOptions are the conditions and TTL of a Set.
type SetOptions struct {
	// TTL is the key's time to live in whole seconds; 0 sends no ttl,
	// so the key never expires (a v0.11 reservation).
	TTL time.Duration
	// PrevExist, PrevValue and PrevIndex are conditions; a failed one
	// is an *Error with CodeNodeExist, CodeKeyNotFound or
	// CodeTestFailed.
	PrevExist PrevExist
	PrevValue string
	PrevIndex uint64
	// Refresh resets the TTL of an existing key without changing its
	// value and without waking watchers; the value must be empty. v0.11
	// never uses it.
	Refresh bool
}

// DeleteOptions are the conditions of a Delete.
type DeleteOptions struct {
	// PrevValue and PrevIndex make a compare-and-delete. Never use one
	// under a v0.11 <prefix>/subnets: its event has no value and wedges
	// every v0.11 watcher (spec 2.4).
	PrevValue string
	PrevIndex uint64
	Recursive bool // delete a directory with everything below it
	Dir       bool // delete an empty directory
}

// Get reads key, as v0.11 does: a quorum read
// (?quorum=true&recursive=<recursive>&sorted=false). With recursive, a
// directory's Node has every key below it in Nodes. Response.Index is the
// cursor a watch continues from. A missing key is an *Error with
// CodeKeyNotFound, whose Index is that cursor.
func (c *Client) Get(ctx context.Context, key string, recursive bool) (*Response, error) {
	q := url.Values{}
	q.Set("quorum", "true")
	q.Set("recursive", strconv.FormatBool(recursive))
	q.Set("sorted", "false")
	return c.do(ctx, request{method: http.MethodGet, key: key, query: q, failover: onAnyFailure})
}

// Set writes value to key under o's conditions. With no conditions it is
// v0.11's write for reuse and renewal (spec 2.2): it replaces the key, so
// its CreatedIndex and ModifiedIndex become the new index, and watchers see
// action set.
func (c *Client) Set(ctx context.Context, key, value string, o SetOptions) (*Response, error) {
	if o.TTL < 0 || o.TTL%time.Second != 0 {
		return nil, fmt.Errorf("etcd v2 set %s: ttl %v is not a whole number of seconds", key, o.TTL)
	}
	if o.Refresh && value != "" {
		return nil, fmt.Errorf("etcd v2 set %s: a refresh takes no value", key)
	}
	q := url.Values{}
	form := url.Values{}
	if o.PrevValue != "" {
		q.Set("prevValue", o.PrevValue)
	}
	if o.PrevIndex != 0 {
		q.Set("prevIndex", strconv.FormatUint(o.PrevIndex, 10))
	}
	if o.PrevExist != PrevIgnore {
		q.Set("prevExist", string(o.PrevExist))
	}
	if !o.Refresh {
		form.Set("value", value)
	}
	if o.TTL > 0 {
		form.Set("ttl", strconv.FormatInt(int64(o.TTL/time.Second), 10))
	}
	if o.Refresh {
		form.Set("refresh", "true")
	}
	fo := onAnyFailure
	if o.PrevExist == PrevNoExist || o.PrevValue != "" || o.PrevIndex != 0 {
		fo = onDialFailure
	}
	return c.do(ctx, request{method: http.MethodPut, key: key, query: q, form: form, failover: fo})
}

// Create writes key only if it does not exist (prevExist=false): v0.11's
// lease allocation, ttl 86400. A taken key is an *Error with
// CodeNodeExist (HTTP 412).
func (c *Client) Create(ctx context.Context, key, value string, ttl time.Duration) (*Response, error) {
	return c.Set(ctx, key, value, SetOptions{TTL: ttl, PrevExist: PrevNoExist})
}

// Update writes key only if it exists (prevExist=true), replacing value and
// TTL; watchers see action update. This is how a migrating node renews its
// v2 copy (spec 8.1); v0.11 itself renews with an unconditional Set. A
// missing key is an *Error with CodeKeyNotFound.
func (c *Client) Update(ctx context.Context, key, value string, ttl time.Duration) (*Response, error) {
	return c.Set(ctx, key, value, SetOptions{TTL: ttl, PrevExist: PrevExists})
}

// Delete removes key under o's conditions. A missing key is an *Error
// with CodeKeyNotFound.
func (c *Client) Delete(ctx context.Context, key string, o DeleteOptions) (*Response, error) {
	q := url.Values{}
	if o.PrevValue != "" {
		q.Set("prevValue", o.PrevValue)
	}
	if o.PrevIndex != 0 {
		q.Set("prevIndex", strconv.FormatUint(o.PrevIndex, 10))
	}
	if o.Recursive {
		q.Set("recursive", "true")
	}
	if o.Dir {
		q.Set("dir", "true")
	}
	fo := onAnyFailure
	if o.PrevValue != "" || o.PrevIndex != 0 {
		fo = onDialFailure
	}
	return c.do(ctx, request{method: http.MethodDelete, key: key, query: q, failover: fo})
}

// Watch is one long poll for the first event on key (with recursive, on
// any key below it) whose index is above afterIndex
// (?recursive=<recursive>&wait=true&waitIndex=<afterIndex+1>). afterIndex
// 0 waits for the next event from now. The caller continues from the
// event's Node.ModifiedIndex.
//
// The poll ends with ctx: bound it and poll again from the same index. An
// afterIndex older than the 1000 events etcd keeps is an *Error with
// CodeEventIndexCleared (IsIndexCleared), whose Index is etcd's current
// index: list again with Get. ErrWatchClosed means etcd dropped the poll.
func (c *Client) Watch(ctx context.Context, key string, recursive bool, afterIndex uint64) (*Response, error) {
	q := url.Values{}
	q.Set("recursive", strconv.FormatBool(recursive))
	q.Set("wait", "true")
	if afterIndex > 0 {
		q.Set("waitIndex", strconv.FormatUint(afterIndex+1, 10))
	}
	return c.do(ctx, request{method: http.MethodGet, key: key, query: q, failover: onAnyFailure, wait: true})
}
