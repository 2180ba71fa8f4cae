package etcdv2

import (
	"errors"
	"fmt"
)

// The errorCodes of etcd's v2 errors that flannel meets
// (go.etcd.io/etcd/server/v3/etcdserver/api/v2error).
const (
	CodeKeyNotFound       = 100 // the key does not exist
	CodeTestFailed        = 101 // prevValue or prevIndex did not match
	CodeNotFile           = 102 // a value operation on a directory
	CodeNotDir            = 104 // a directory operation on a value
	CodeNodeExist         = 105 // prevExist=false and the key exists
	CodeRootReadOnly      = 107 // the root is read only
	CodeDirNotEmpty       = 108 // a non-recursive delete of a full directory
	CodeUnauthorized      = 110 // v2 auth refused the request
	CodeEventIndexCleared = 401 // waitIndex older than the 1000 events kept
)

// Error is an error answer of etcd's v2 API.
type Error struct {
	Code    int    `json:"errorCode"`
	Message string `json:"message"`
	Cause   string `json:"cause,omitempty"`
	// Index is the store's index when etcd answered. For
	// CodeKeyNotFound on a list it is the cursor a watch starts from.
	Index uint64 `json:"index"`
	// HTTPStatus is the answer's status code (404, 412, 400, ...).
	HTTPStatus int `json:"-"`
}

func (e *Error) Error() string {
	if e.Cause != "" {
		return fmt.Sprintf("etcd v2: %s (%s) [code %d, index %d]", e.Message, e.Cause, e.Code, e.Index)
	}
	return fmt.Sprintf("etcd v2: %s [code %d, index %d]", e.Message, e.Code, e.Index)
}

// ErrNoV2API means an endpoint answered /v2/keys with something other than
// the v2 API: etcd 3.4 or 3.5 without --enable-v2, etcd 3.6 or later, or no
// etcd at all. etcd without v2 answers "404 page not found".
var ErrNoV2API = errors.New("the endpoint does not serve etcd's v2 API (etcd 3.4/3.5 needs --enable-v2=true; 3.6 and later have none)")

// ErrorCode returns the errorCode of an *Error in err's chain, or 0.
func ErrorCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// IsKeyNotFound reports whether err is etcd's "key not found" (100).
func IsKeyNotFound(err error) bool { return ErrorCode(err) == CodeKeyNotFound }

// IsCompareFailed reports whether a prevValue or prevIndex compare failed
// (101).
func IsCompareFailed(err error) bool { return ErrorCode(err) == CodeTestFailed }

// IsNodeExist reports whether a create found the key taken (105).
func IsNodeExist(err error) bool { return ErrorCode(err) == CodeNodeExist }

// IsIndexCleared reports whether a watch asked for an index older than the
// history etcd keeps (401); the watcher lists again.
func IsIndexCleared(err error) bool { return ErrorCode(err) == CodeEventIndexCleared }
