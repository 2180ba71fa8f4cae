package etcdv2

import "time"

// Node is a key of the v2 store: a value node, or a directory with Nodes
// (filled by a recursive Get).
type Node struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
	Dir   bool   `json:"dir,omitempty"`
	// Expiration and TTL (seconds left, rounded up by etcd) are set only
	// for a key with a TTL; a key without one never expires.
	Expiration    *time.Time `json:"expiration,omitempty"`
	TTL           int64      `json:"ttl,omitempty"`
	Nodes         []*Node    `json:"nodes,omitempty"`
	ModifiedIndex uint64     `json:"modifiedIndex,omitempty"`
	CreatedIndex  uint64     `json:"createdIndex,omitempty"`
}

// Response is etcd's answer to a request that succeeded.
type Response struct {
	// Action is what happened: get, set, create, update,
	// compareAndSwap, delete, compareAndDelete, expire.
	Action   string `json:"action"`
	Node     *Node  `json:"node"`
	PrevNode *Node  `json:"prevNode,omitempty"`
	// Index is the X-Etcd-Index header: the store's index when etcd
	// answered. After a list it is the cursor a watch continues from.
	Index uint64 `json:"-"`
}

// The actions of Response.Action (and of a watched event).
const (
	ActionGet              = "get"
	ActionSet              = "set"
	ActionCreate           = "create"
	ActionUpdate           = "update"
	ActionCompareAndSwap   = "compareAndSwap"
	ActionDelete           = "delete"
	ActionCompareAndDelete = "compareAndDelete"
	ActionExpire           = "expire"
)
