package metrics

import (
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// This file holds the few metric kinds flanneld needs and the Prometheus
// text exposition format 0.0.4 writer. It replaces client_golang, whose
// code (with client_model, expfmt, procfs, xxhash, perks) weighed some
// 600 KiB of flanneld's mapped executable for a dozen metrics, and mapped
// executable is resident memory.

// contentType is what Prometheus expects for the text format.
const contentType = "text/plain; version=0.0.4; charset=utf-8"

// Metric types as a # TYPE line names them.
const (
	typeCounter   = "counter"
	typeGauge     = "gauge"
	typeHistogram = "histogram"
	typeSummary   = "summary"
)

// opts names and documents a metric; Buckets (upper bounds, increasing)
// only for histograms.
type opts struct {
	Name, Help string
	Buckets    []float64
}

// family is one metric family as a scrape sees it: a snapshot.
type family struct {
	name, help, typ string
	samples         []sample
}

// sample is one line of a family.
type sample struct {
	suffix string   // "", or "_bucket", "_sum", "_count" for histograms and summaries
	labels []string // name, value pairs in output order
	value  float64
	count  uint64 // written instead of value when isCount
	// isCount marks an integer (histogram bucket or _count), written as
	// client_golang does: in full, never in exponent notation.
	isCount bool
}

// collector adds its families to a scrape.
type collector interface {
	collect(dst []family) []family
}

// Gauge is a value that can go up and down. Safe for concurrent use.
type Gauge struct {
	opts opts
	bits atomic.Uint64
}

func newGauge(o opts) *Gauge { return &Gauge{opts: o} }

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Value is the gauge's current value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

func (g *Gauge) collect(dst []family) []family {
	return append(dst, single(g.opts.Name, g.opts.Help, typeGauge, g.Value()))
}

// single is a family of one unlabelled sample.
func single(name, help, typ string, v float64) family {
	return family{name: name, help: help, typ: typ, samples: []sample{{value: v}}}
}

// maxLabels bounds a vector's labels so that a series' label values can be
// an array, a map key without any encoding.
const maxLabels = 4

type labelKey [maxLabels]string

// vec is a counter or a histogram with labels (or none). Its series are
// created on first use, as client_golang's vectors do; one without labels
// exists from the start. Safe for concurrent use.
type vec struct {
	opts
	typ    string
	labels []string // sorted by name: the order of the output
	perm   []int    // labels[i] is the perm[i]-th label the callers pass

	mu     sync.Mutex
	series map[labelKey]*series
}

type series struct {
	key   labelKey
	value float64  // counter
	hits  []uint64 // histogram: observations per bucket, the last one +Inf
	sum   float64  // histogram
	count uint64   // histogram
}

func newCounterVec(o opts, labels ...string) *vec   { return newVec(o, typeCounter, labels) }
func newHistogramVec(o opts, labels ...string) *vec { return newVec(o, typeHistogram, labels) }

// newVec panics on a definition error, as those are programming errors
// found by the first test that calls New.
func newVec(o opts, typ string, labels []string) *vec {
	if len(labels) > maxLabels {
		panic("metrics: " + o.Name + ": more than " + strconv.Itoa(maxLabels) + " labels")
	}
	if typ == typeHistogram && !slices.IsSorted(o.Buckets) {
		panic("metrics: " + o.Name + ": buckets not increasing")
	}
	v := &vec{opts: o, typ: typ, series: map[labelKey]*series{}}
	for i := range labels {
		v.perm = append(v.perm, i)
	}
	sort.Slice(v.perm, func(a, b int) bool { return labels[v.perm[a]] < labels[v.perm[b]] })
	for _, p := range v.perm {
		v.labels = append(v.labels, labels[p])
	}
	if len(labels) == 0 {
		v.mu.Lock()
		v.get(nil)
		v.mu.Unlock()
	}
	return v
}

// get returns the series of values (in the callers' label order), creating
// it. v.mu must be held.
func (v *vec) get(values []string) *series {
	if len(values) != len(v.labels) {
		panic("metrics: " + v.Name + ": " + strconv.Itoa(len(values)) + " label values for " + strconv.Itoa(len(v.labels)) + " labels")
	}
	var k labelKey
	for i, p := range v.perm {
		k[i] = strings.ToValidUTF8(values[p], "\uFFFD")
	}
	s := v.series[k]
	if s == nil {
		s = &series{key: k}
		if v.typ == typeHistogram {
			s.hits = make([]uint64, len(v.Buckets)+1)
		}
		v.series[k] = s
	}
	return s
}

// add adds d (not negative: a counter never goes down) to a counter.
func (v *vec) add(d float64, values ...string) {
	if d < 0 {
		panic("metrics: " + v.Name + ": counter decreased")
	}
	v.mu.Lock()
	v.get(values).value += d
	v.mu.Unlock()
}

// observe records x in a histogram.
func (v *vec) observe(x float64, values ...string) {
	i := sort.SearchFloat64s(v.Buckets, x) // the first bucket with x <= le
	v.mu.Lock()
	s := v.get(values)
	s.hits[i]++
	s.sum += x
	s.count++
	v.mu.Unlock()
}

func (v *vec) collect(dst []family) []family {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.series) == 0 {
		return dst // client_golang leaves out families without series too
	}
	keys := make([]labelKey, 0, len(v.series))
	for k := range v.series {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b labelKey) int {
		for i := range a {
			if c := strings.Compare(a[i], b[i]); c != 0 {
				return c
			}
		}
		return 0
	})
	f := family{name: v.Name, help: v.Help, typ: v.typ}
	for _, k := range keys {
		s := v.series[k]
		labels := make([]string, 0, 2*len(v.labels))
		for i, name := range v.labels {
			labels = append(labels, name, k[i])
		}
		if v.typ != typeHistogram {
			f.samples = append(f.samples, sample{labels: labels, value: s.value})
			continue
		}
		var cum uint64
		for i, n := range s.hits {
			cum += n
			le := "+Inf"
			if i < len(v.Buckets) {
				le = string(appendFloat(nil, v.Buckets[i]))
			}
			// le goes last, after the series' own labels, as in client_golang.
			f.samples = append(f.samples, sample{suffix: "_bucket", labels: append(labels[:len(labels):len(labels)], "le", le), count: cum, isCount: true})
		}
		f.samples = append(f.samples,
			sample{suffix: "_sum", labels: labels, value: s.sum},
			sample{suffix: "_count", labels: labels, count: s.count, isCount: true})
	}
	return append(dst, f)
}

// appendText writes the families in the text format, sorted by name as
// client_golang's registry does.
func appendText(b []byte, fams []family) []byte {
	slices.SortStableFunc(fams, func(a, b family) int { return strings.Compare(a.name, b.name) })
	for i := range fams {
		b = appendFamily(b, &fams[i])
	}
	return b
}

func appendFamily(b []byte, f *family) []byte {
	b = append(b, "# HELP "...)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = appendEscaped(b, f.help, false)
	b = append(b, "\n# TYPE "...)
	b = append(b, f.name...)
	b = append(b, ' ')
	b = append(b, f.typ...)
	b = append(b, '\n')
	for _, s := range f.samples {
		b = append(b, f.name...)
		b = append(b, s.suffix...)
		if len(s.labels) > 0 {
			b = append(b, '{')
			for i := 0; i+1 < len(s.labels); i += 2 {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, s.labels[i]...)
				b = append(b, `="`...)
				b = appendEscaped(b, s.labels[i+1], true)
				b = append(b, '"')
			}
			b = append(b, '}')
		}
		b = append(b, ' ')
		if s.isCount {
			b = strconv.AppendUint(b, s.count, 10)
		} else {
			b = appendFloat(b, s.value)
		}
		b = append(b, '\n')
	}
	return b
}

// appendEscaped escapes backslash and newline (HELP text), and double
// quotes too in a label value.
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendFloat formats as client_golang's expfmt: shortest 'g', with the
// format's spellings of the special values.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case f == 0: // -0 too
		return append(b, '0')
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}
