package kube

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// The API server's streams, decoded here rather than by apimachinery's
// streaming decoder, which needs a goroutine of its own per watch and a
// channel hop per event (rest.Request.Watch):
//
//   - A list in protobuf is apimachinery's envelope: "k8s\x00", then a
//     runtime.Unknown whose raw field (2) is the NodeList. It is read
//     field by field, one item at a time.
//   - A watch in protobuf ("application/vnd.kubernetes.protobuf;stream=watch")
//     is a sequence of frames, each a 4-byte big-endian length and a
//     metav1.WatchEvent without envelope (the raw serializer): type (1)
//     and object (2), a runtime.RawExtension whose raw field (1) holds
//     the Node (or, for ERROR, the metav1.Status) in the envelope.
//   - JSON, for a server or proxy that answers our Accept header with it:
//     a NodeList, and a WatchEvent object per event.

// protobufMagic starts every object apimachinery encodes in protobuf.
var protobufMagic = []byte("k8s\x00")

// Field numbers of the envelope and the watch event.
const (
	fUnknownRaw      = 2 // runtime.Unknown
	fEventType       = 1 // metav1.WatchEvent
	fEventObject     = 2
	fRawExtensionRaw = 1 // runtime.RawExtension
)

// maxMessage bounds one Node or one watch frame: etcd refuses values over
// 1.5 MiB, so anything near this is not an API server talking.
const maxMessage = 16 << 20

// decodeNodeList reads a list answer from r, giving each Node to each as
// soon as it is decoded; only one Node's bytes are held at a time.
func decodeNodeList(r *bufio.Reader, each func(*Node)) (metav1.ListMeta, error) {
	var meta metav1.ListMeta
	head, err := r.Peek(len(protobufMagic))
	if len(head) == 0 {
		return meta, err
	}
	if !bytes.Equal(head, protobufMagic) {
		var l NodeList
		if err := json.NewDecoder(r).Decode(&l); err != nil {
			return meta, err
		}
		for i := range l.Items {
			each(&l.Items[i])
		}
		return l.ListMeta, nil
	}
	pr := &protoReader{r: r}
	pr.discard(len(protobufMagic))
	for { // runtime.Unknown, to the end of the body
		num, typ, err := pr.tag()
		if err == io.EOF {
			return meta, nil
		}
		if err != nil {
			return meta, err
		}
		if num != fUnknownRaw || typ != protowire.BytesType {
			if err := pr.skip(typ); err != nil {
				return meta, err
			}
			continue
		}
		n, err := pr.length()
		if err != nil {
			return meta, err
		}
		if err := pr.nodeList(pr.n+n, &meta, each); err != nil {
			return meta, err
		}
	}
}

// nodeList reads the fields of a NodeList that ends at offset end.
func (p *protoReader) nodeList(end int64, meta *metav1.ListMeta, each func(*Node)) error {
	for p.n < end {
		num, typ, err := p.tag()
		if err != nil {
			return unexpected(err)
		}
		if typ != protowire.BytesType || (num != fMetadata && num != fItems) {
			if err := p.skip(typ); err != nil {
				return err
			}
			continue
		}
		b, err := p.bytes()
		if err != nil {
			return err
		}
		if num == fMetadata {
			err = unmarshalListMeta(b, meta)
		} else {
			var n Node
			if err = n.Unmarshal(b); err == nil {
				each(&n)
			}
		}
		if err != nil {
			return err
		}
	}
	if p.n != end {
		return fmt.Errorf("%w: NodeList overruns its length", errProto)
	}
	return nil
}

// protoReader reads protobuf fields from a stream, counting the bytes.
type protoReader struct {
	r   *bufio.Reader
	n   int64  // bytes read
	buf []byte // the last length-delimited field, reused
}

func (p *protoReader) ReadByte() (byte, error) {
	b, err := p.r.ReadByte()
	if err == nil {
		p.n++
	}
	return b, err
}

func (p *protoReader) discard(n int) error {
	d, err := p.r.Discard(n)
	p.n += int64(d)
	return unexpected(err)
}

// tag reads a field's tag; io.EOF when the stream ends before it.
func (p *protoReader) tag() (protowire.Number, protowire.Type, error) {
	at := p.n
	v, err := binary.ReadUvarint(p)
	if err != nil {
		if err == io.EOF && p.n == at {
			return 0, 0, io.EOF
		}
		return 0, 0, unexpected(err)
	}
	num, typ := protowire.DecodeTag(v)
	if num < protowire.MinValidNumber {
		return 0, 0, fmt.Errorf("%w: field number %d", errProto, num)
	}
	return num, typ, nil
}

// length reads a length-delimited field's length.
func (p *protoReader) length() (int64, error) {
	v, err := binary.ReadUvarint(p)
	if err != nil {
		return 0, unexpected(err)
	}
	if v > maxMessage {
		return 0, fmt.Errorf("%w: a field of %d bytes", errProto, v)
	}
	return int64(v), nil
}

// bytes reads a length-delimited field's bytes into p.buf.
func (p *protoReader) bytes() ([]byte, error) {
	n, err := p.length()
	if err != nil {
		return nil, err
	}
	p.buf = grow(p.buf, int(n))
	m, err := io.ReadFull(p.r, p.buf)
	p.n += int64(m)
	return p.buf, unexpected(err)
}

// skip reads past a field's value.
func (p *protoReader) skip(typ protowire.Type) error {
	switch typ {
	case protowire.VarintType:
		_, err := binary.ReadUvarint(p)
		return unexpected(err)
	case protowire.Fixed32Type:
		return p.discard(4)
	case protowire.Fixed64Type:
		return p.discard(8)
	case protowire.BytesType:
		n, err := p.length()
		if err != nil {
			return err
		}
		return p.discard(int(n))
	}
	return fmt.Errorf("%w: wire type %d", errProto, typ)
}

// unexpected turns io.EOF inside a message into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// watchStream decodes the events of one watch, in the reader's goroutine.
type watchStream struct {
	body   io.ReadCloser
	cancel context.CancelFunc // ends the request
	r      *bufio.Reader
	json   *json.Decoder // the server answered in JSON
	seen   bool          // the first byte was looked at
	buf    []byte        // the last frame, reused

	idle  time.Duration
	last  atomic.Int64 // time of the last event, UnixNano
	timer *time.Timer  // cancels the request after idle without an event
	idled atomic.Bool
}

// newWatchStream reads body; cancel ends its request. With idle > 0, a
// watch that brings nothing for idle is ended (next returns an error).
func newWatchStream(body io.ReadCloser, cancel context.CancelFunc, idle time.Duration) *watchStream {
	w := &watchStream{body: body, cancel: cancel, r: bufio.NewReaderSize(body, 16<<10), idle: idle}
	if idle > 0 {
		w.last.Store(time.Now().UnixNano())
		w.timer = time.AfterFunc(time.Hour, w.check)
		w.timer.Reset(idle)
	}
	return w
}

// check runs on the timer: it cancels a watch idle for w.idle, and
// otherwise sets the timer for when it would be.
func (w *watchStream) check() {
	quiet := time.Since(time.Unix(0, w.last.Load()))
	if quiet < w.idle {
		w.timer.Reset(w.idle - quiet)
		return
	}
	w.idled.Store(true)
	w.cancel()
}

func (w *watchStream) close() {
	if w.timer != nil {
		w.timer.Stop()
	}
	w.cancel()
	w.body.Close()
}

// next reads one event; see read.
func (w *watchStream) next() (watch.EventType, *Node, error) {
	typ, n, err := w.read()
	if err != nil {
		if w.idled.Load() {
			err = fmt.Errorf("no event for %v, not even a bookmark: %w", w.idle, err)
		}
		return typ, n, err
	}
	if w.timer != nil {
		w.last.Store(time.Now().UnixNano())
	}
	return typ, n, nil
}

// read reads one event. A frame's length starts with a zero byte (frames
// are far below 16 MiB), a JSON event with '{'.
func (w *watchStream) read() (watch.EventType, *Node, error) {
	if !w.seen {
		b, err := w.r.Peek(1)
		if err != nil {
			return "", nil, err
		}
		w.seen = true
		if b[0] == '{' {
			w.json = json.NewDecoder(w.r)
		}
	}
	if w.json != nil {
		return w.nextJSON()
	}
	var head [4]byte
	if _, err := io.ReadFull(w.r, head[:]); err != nil {
		return "", nil, err // io.EOF between frames: the server ended the watch
	}
	n := binary.BigEndian.Uint32(head[:])
	if n > maxMessage {
		return "", nil, fmt.Errorf("%w: a watch frame of %d bytes", errProto, n)
	}
	w.buf = grow(w.buf, int(n))
	if _, err := io.ReadFull(w.r, w.buf); err != nil {
		return "", nil, unexpected(err)
	}
	return decodeWatchEvent(w.buf)
}

// decodeWatchEvent decodes one protobuf frame.
func decodeWatchEvent(frame []byte) (watch.EventType, *Node, error) {
	var typ, raw []byte
	err := fields(frame, func(num protowire.Number, t protowire.Type, b []byte, _ uint64) error {
		switch {
		case t != protowire.BytesType:
		case num == fEventType:
			typ = b
		case num == fEventObject:
			return fields(b, func(num protowire.Number, t protowire.Type, b []byte, _ uint64) error {
				if num == fRawExtensionRaw && t == protowire.BytesType {
					raw = b
				}
				return nil
			})
		}
		return nil
	})
	if err == nil {
		raw, err = unwrap(raw)
	}
	if err != nil {
		return "", nil, fmt.Errorf("watch event: %w", err)
	}
	et := watch.EventType(typ)
	if et == watch.Error {
		var st metav1.Status
		if err := st.Unmarshal(raw); err != nil {
			return "", nil, fmt.Errorf("watch error event: %w", err)
		}
		return "", nil, apierrors.FromObject(&st)
	}
	n := &Node{}
	if err := n.Unmarshal(raw); err != nil {
		return "", nil, fmt.Errorf("watch event %s: %w", et, err)
	}
	return et, n, nil
}

// unwrap returns the object inside apimachinery's envelope (raw as it is
// without one).
func unwrap(raw []byte) ([]byte, error) {
	if !bytes.HasPrefix(raw, protobufMagic) {
		return raw, nil
	}
	var obj []byte
	err := fields(raw[len(protobufMagic):], func(num protowire.Number, t protowire.Type, b []byte, _ uint64) error {
		if num == fUnknownRaw && t == protowire.BytesType {
			obj = b
		}
		return nil
	})
	return obj, err
}

// nextJSON reads one event of a JSON watch.
func (w *watchStream) nextJSON() (watch.EventType, *Node, error) {
	var ev struct {
		Type   watch.EventType `json:"type"`
		Object json.RawMessage `json:"object"`
	}
	if err := w.json.Decode(&ev); err != nil {
		return "", nil, err
	}
	if ev.Type == watch.Error {
		var st metav1.Status
		if err := json.Unmarshal(ev.Object, &st); err != nil {
			return "", nil, fmt.Errorf("watch error event: %w", err)
		}
		return "", nil, apierrors.FromObject(&st)
	}
	n := &Node{}
	if err := json.Unmarshal(ev.Object, n); err != nil {
		return "", nil, fmt.Errorf("watch event %s: %w", ev.Type, err)
	}
	return ev.Type, n, nil
}
