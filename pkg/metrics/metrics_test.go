package metrics

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flannelng/flannel/backend"
)

func scrape(t testing.TB, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4; charset=utf-8") {
		t.Fatalf("Content-Type %q", ct)
	}
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

func TestMetricsExposition(t *testing.T) {
	m := New()
	m.EtcdRequest("get", 3*time.Millisecond, nil)
	m.EtcdRequest("get", time.Second, errors.New("unavailable"))
	m.WatchRestart(true)
	m.Pass(backend.PassReport{Full: true, Writes: map[[2]string]int{{"route", "set"}: 3, {"fdb", "del"}: 1}})
	m.Pass(backend.PassReport{Repair: true, Full: true, Writes: map[[2]string]int{{"route", "set"}: 1}})
	m.Pass(backend.PassReport{Delta: true, Duration: 2 * time.Millisecond, Writes: map[[2]string]int{{"neigh", "set"}: 2}})
	m.FirewallRepair("IPv4 nat")
	m.Ready.Set(1)
	m.LeaseExpiry.Set(1795521651)
	m.SubnetsFree.Set(253)
	body := scrape(t, m)
	for _, want := range []string{
		`flannel_etcd_request_errors_total{request="get"} 1`,
		`flannel_etcd_request_duration_seconds_count{request="get"} 2`,
		`flannel_etcd_request_duration_seconds_bucket{request="get",le="0.0025"} 0`,
		`flannel_etcd_request_duration_seconds_bucket{request="get",le="0.005"} 1`,
		`flannel_etcd_request_duration_seconds_bucket{request="get",le="1"} 2`,
		`flannel_etcd_request_duration_seconds_bucket{request="get",le="+Inf"} 2`,
		`flannel_etcd_request_duration_seconds_sum{request="get"} 1.003`,
		`flannel_etcd_watch_restarts_total{reason="compaction"} 1`,
		`flannel_reconcile_passes_total{kind="full"} 2`,
		`flannel_reconcile_passes_total{kind="incremental"} 1`,
		`flannel_reconcile_duration_seconds_bucket{le="0.001"} 2`,
		`flannel_reconcile_duration_seconds_bucket{le="0.005"} 3`,
		`flannel_reconcile_duration_seconds_count 3`,
		`flannel_kernel_objects_total{action="added",object="neigh"} 2`,
		`flannel_firewall_repairs_total{table="IPv4 nat"} 1`,
		`flannel_ready 1`,
		`flannel_leases 0`,
		`flannel_lease_expiry_timestamp_seconds 1.795521651e+09`,
		`flannel_subnets_free 253`,
		"# HELP flannel_ready 1 once the lease is held, the data plane programmed and subnet.env written.\n# TYPE flannel_ready gauge\n",
		"# TYPE flannel_etcd_request_duration_seconds histogram\n",
		"# TYPE flannel_kernel_objects_total counter\n" +
			`flannel_kernel_objects_total{action="added",object="neigh"} 2` + "\n" +
			`flannel_kernel_objects_total{action="added",object="route"} 3` + "\n" +
			`flannel_kernel_objects_total{action="removed",object="fdb"} 1` + "\n" +
			`flannel_kernel_objects_total{action="repaired",object="route"} 1` + "\n",
		"\ngo_goroutines ",
		"\ngo_threads ",
		"\ngo_memstats_alloc_bytes ",
		"\ngo_memstats_heap_inuse_bytes ",
		"\ngo_memstats_sys_bytes ",
		"# TYPE go_gc_duration_seconds summary\n" + `go_gc_duration_seconds{quantile="0"} `,
		`go_gc_duration_seconds{quantile="0.25"} `,
		`go_gc_duration_seconds{quantile="1"} `,
		"\ngo_gc_duration_seconds_count ",
		`go_info{version="go1.`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q", want)
		}
	}
	// A vector nobody used is left out, as client_golang does; a
	// histogram without labels is there from the start.
	if strings.Contains(body, "watch_restarts_total{reason=\"reconnect\"}") {
		t.Error("series never used is exposed")
	}
	if b := scrape(t, New()); strings.Contains(b, "flannel_etcd_request_errors_total") || !strings.Contains(b, "flannel_reconcile_duration_seconds_count 0\n") {
		t.Errorf("fresh metrics:\n%s", b)
	}
	if err := checkExposition(body); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
}

func TestHandlerMethods(t *testing.T) {
	h := New().Handler()
	for _, method := range []string{"POST", "PUT", "DELETE"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, "/metrics", nil))
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: status %d, Allow %q", method, rec.Code, rec.Header().Get("Allow"))
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("HEAD", "/metrics", nil))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Errorf("HEAD: status %d, %d body bytes, Content-Type %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Type"))
	}
}

func TestEscaping(t *testing.T) {
	m := New()
	m.FirewallRepair("a\"b\\c\nd")
	m.FirewallRepair("bad\xffutf8")
	body := scrape(t, m)
	for _, want := range []string{
		`flannel_firewall_repairs_total{table="a\"b\\c\nd"} 1`,
		`flannel_firewall_repairs_total{table="bad` + "\uFFFD" + `utf8"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q", want)
		}
	}
	if err := checkExposition(body); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}

}

// TestConcurrentHooks is meant for -race: hooks from several goroutines
// while another scrapes, then exact totals.
func TestConcurrentHooks(t *testing.T) {
	m := New()
	const workers, rounds = 4, 200
	var wg sync.WaitGroup
	done := make(chan struct{})
	scraped := make(chan error, 1)
	go func() {
		defer close(scraped)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if err := checkExposition(scrapeText(m)); err != nil {
				scraped <- err
				return
			}
			if i > 10000 {
				return
			}
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				m.EtcdRequest("get", time.Duration(i)*time.Millisecond, errors.New("x"))
				m.WatchRestart(i%2 == 0)
				m.Pass(backend.PassReport{Full: i%2 == 0, Writes: map[[2]string]int{{"route", "set"}: 2}})
				m.FirewallRepair(fmt.Sprint("table", w))
				m.Leases.Set(float64(i))
				if i%50 == 0 { // scrapes amid the other workers' hooks, whatever the scheduling
					if err := checkExposition(scrapeText(m)); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	if err := <-scraped; err != nil {
		t.Fatal(err)
	}
	body := scrape(t, m)
	for _, want := range []string{
		fmt.Sprintf(`flannel_etcd_request_duration_seconds_count{request="get"} %d`, workers*rounds),
		fmt.Sprintf(`flannel_etcd_request_errors_total{request="get"} %d`, workers*rounds),
		fmt.Sprintf(`flannel_etcd_watch_restarts_total{reason="compaction"} %d`, workers*rounds/2),
		fmt.Sprintf(`flannel_reconcile_passes_total{kind="incremental"} %d`, workers*rounds/2),
		fmt.Sprintf(`flannel_kernel_objects_total{action="added",object="route"} %d`, 2*workers*rounds),
		fmt.Sprintf(`flannel_firewall_repairs_total{table="table3"} %d`, rounds),
		fmt.Sprintf("flannel_leases %d", rounds-1),
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q", want)
		}
	}
}

func BenchmarkScrape(b *testing.B) {
	m := New()
	for _, k := range []string{"get", "list", "grant", "create", "update", "renew", "delete", "revoke"} {
		m.EtcdRequest(k, time.Millisecond, nil)
	}
	m.Pass(backend.PassReport{Full: true, Writes: map[[2]string]int{{"route", "set"}: 3, {"fdb", "del"}: 1, {"neigh", "set"}: 1}})
	h := m.Handler()
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b.SetBytes(int64(rec.Body.Len()))
	}
}

// scrapeText is one scrape's body, for goroutines other than the test's
// (no t.Fatal).
func scrapeText(m *Metrics) string {
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// checkExposition is a strict reader of the text format 0.0.4 as we write
// it: HELP then TYPE once per family, families sorted and not repeated,
// every sample in the family of the TYPE line before it (with the suffixes
// its type allows), valid names, label values with only the three escapes,
// unique series, and histograms and summaries complete and consistent.
func checkExposition(text string) error {
	if !strings.HasSuffix(text, "\n") {
		return errors.New("output does not end in a newline")
	}
	type hist struct {
		les        []float64
		counts     []uint64
		count, sum bool
		countValue uint64
		quantiles  int
	}
	var (
		fam, typ, helped string
		names            []string
		typed            = map[string]bool{}
		seen             = map[string]bool{}
		groups           map[string]*hist
	)
	// finish checks the histogram or summary just read.
	finish := func() error {
		for key, h := range groups {
			switch typ {
			case typeHistogram:
				if len(h.les) == 0 || !math.IsInf(h.les[len(h.les)-1], 1) {
					return fmt.Errorf("%s{%s}: no le=\"+Inf\" bucket last", fam, key)
				}
				if !slices.IsSorted(h.les) || !slices.IsSorted(h.counts) {
					return fmt.Errorf("%s{%s}: buckets %v / counts %v not increasing", fam, key, h.les, h.counts)
				}
				if !h.count || !h.sum || h.counts[len(h.counts)-1] != h.countValue {
					return fmt.Errorf("%s{%s}: _count %d (present %v), _sum present %v, +Inf bucket %d", fam, key, h.countValue, h.count, h.sum, h.counts[len(h.counts)-1])
				}
			case typeSummary:
				if !h.count || !h.sum || h.quantiles == 0 {
					return fmt.Errorf("%s{%s}: summary without quantiles, _sum or _count", fam, key)
				}
			}
		}
		return nil
	}
	nameRE := regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelRE := regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for n, line := range lines {
		fail := func(format string, a ...any) error {
			return fmt.Errorf("line %d %q: %s", n+1, line, fmt.Sprintf(format, a...))
		}
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, help, _ := strings.Cut(rest, " ")
			if !nameRE.MatchString(name) || helped != "" {
				return fail("bad name or second HELP before TYPE")
			}
			for i := 0; i < len(help); i++ {
				if help[i] == '\\' {
					if i+1 == len(help) || (help[i+1] != '\\' && help[i+1] != 'n') {
						return fail("bad escape in HELP")
					}
					i++
				}
			}
			helped = name
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, t, _ := strings.Cut(rest, " ")
			if !nameRE.MatchString(name) || helped != name {
				return fail("bad name or no HELP of it just before")
			}
			if typed[name] {
				return fail("second TYPE for %s", name)
			}
			if len(names) > 0 && names[len(names)-1] >= name {
				return fail("families not sorted")
			}
			if !slices.Contains([]string{typeCounter, typeGauge, typeHistogram, typeSummary}, t) {
				return fail("unknown type")
			}
			if err := finish(); err != nil {
				return err
			}
			typed[name], names, fam, typ, helped, groups = true, append(names, name), name, t, "", map[string]*hist{}
			continue
		}
		if line == "" || line[0] == '#' {
			return fail("blank line or unknown comment")
		}
		if fam == "" || helped != "" {
			return fail("sample before any TYPE, or after a HELP without TYPE")
		}
		// Sample: name, optional {labels}, space, value.
		end := strings.IndexAny(line, "{ ")
		if end < 0 {
			return fail("no value")
		}
		name := line[:end]
		if !nameRE.MatchString(name) {
			return fail("bad metric name")
		}
		suffix, ok := strings.CutPrefix(name, fam)
		allowed := map[string][]string{
			typeCounter: {""}, typeGauge: {""},
			typeHistogram: {"_bucket", "_sum", "_count"}, typeSummary: {"", "_sum", "_count"},
		}[typ]
		if !ok || !slices.Contains(allowed, suffix) {
			return fail("not a sample of %s %s", typ, fam)
		}
		rest := line[end:]
		var labels [][2]string
		if rest[0] == '{' {
			rest = rest[1:]
			for !strings.HasPrefix(rest, "}") {
				if len(labels) > 0 {
					if rest, ok = strings.CutPrefix(rest, ","); !ok {
						return fail("no comma between labels")
					}
				}
				ln, after, ok := strings.Cut(rest, `="`)
				if !ok || !labelRE.MatchString(ln) {
					return fail("bad label name")
				}
				var v strings.Builder
				i := 0
				for ; i < len(after) && after[i] != '"'; i++ {
					if after[i] == '\\' {
						if i+1 == len(after) {
							return fail("escape at the end")
						}
						switch after[i+1] {
						case '\\':
							v.WriteByte('\\')
						case '"':
							v.WriteByte('"')
						case 'n':
							v.WriteByte('\n')
						default:
							return fail("bad escape \\%c", after[i+1])
						}
						i++
						continue
					}
					v.WriteByte(after[i])
				}
				if i == len(after) {
					return fail("unterminated label value")
				}
				labels = append(labels, [2]string{ln, v.String()})
				rest = after[i+1:]
			}
			rest = rest[1:]
		}
		vs, ok := strings.CutPrefix(rest, " ")
		if !ok {
			return fail("no space before the value")
		}
		val, err := strconv.ParseFloat(vs, 64)
		if err != nil {
			return fail("bad value: %v", err)
		}
		// The series' own labels, sorted by name, then le or quantile.
		var special *[2]string
		if len(labels) > 0 && (labels[len(labels)-1][0] == "le" || labels[len(labels)-1][0] == "quantile") {
			special, labels = &labels[len(labels)-1], labels[:len(labels)-1]
		}
		if !slices.IsSortedFunc(labels, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) }) {
			return fail("labels not sorted by name")
		}
		var key strings.Builder
		for i, l := range labels {
			if i > 0 && l[0] == labels[i-1][0] {
				return fail("label %s twice", l[0])
			}
			fmt.Fprintf(&key, "%s=%q,", l[0], l[1])
		}
		full := name + "{" + key.String()
		if special != nil {
			full += special[0] + "=" + special[1]
		}
		if seen[full] {
			return fail("series twice")
		}
		seen[full] = true
		h := groups[key.String()]
		if h == nil {
			h = &hist{}
			groups[key.String()] = h
		}
		switch {
		case suffix == "_bucket":
			if special == nil || special[0] != "le" {
				return fail("bucket without le")
			}
			le, err := strconv.ParseFloat(special[1], 64)
			if err != nil || val != math.Trunc(val) || val < 0 {
				return fail("bad le or count")
			}
			h.les, h.counts = append(h.les, le), append(h.counts, uint64(val))
		case suffix == "_count" && typ != typeCounter:
			h.count, h.countValue = true, uint64(val)
		case suffix == "_sum":
			h.sum = true
		case typ == typeSummary:
			if special == nil || special[0] != "quantile" {
				return fail("summary sample without quantile")
			}
			h.quantiles++
		case special != nil:
			return fail("%s label on a %s", special[0], typ)
		}
	}
	if helped != "" {
		return fmt.Errorf("HELP %s without TYPE at the end", helped)
	}
	return finish()
}

// TestCheckExposition: the checker rejects what it should.
func TestCheckExposition(t *testing.T) {
	good := "# HELP a x\n# TYPE a histogram\na_bucket{l=\"1\",le=\"1\"} 1\na_bucket{l=\"1\",le=\"+Inf\"} 2\na_sum{l=\"1\"} 3\na_count{l=\"1\"} 2\n" +
		"# HELP b y\n# TYPE b counter\nb{x=\"q\\\"\"} 1\n"
	if err := checkExposition(good); err != nil {
		t.Fatalf("good input rejected: %v", err)
	}
	for name, bad := range map[string]string{
		"no TYPE":        "# HELP a x\na 1\n",
		"two TYPEs":      "# HELP a x\n# TYPE a gauge\na 1\n# HELP a x\n# TYPE a gauge\n",
		"unsorted":       "# HELP b x\n# TYPE b gauge\nb 1\n# HELP a x\n# TYPE a gauge\na 1\n",
		"foreign sample": "# HELP a x\n# TYPE a gauge\nb 1\n",
		"bad name":       "# HELP a x\n# TYPE a gauge\na-b 1\n",
		"bad escape":     "# HELP a x\n# TYPE a gauge\na{l=\"\\t\"} 1\n",
		"raw quote":      "# HELP a x\n# TYPE a gauge\na{l=\"\"\"} 1\n",
		"labels order":   "# HELP a x\n# TYPE a gauge\na{m=\"1\",l=\"2\"} 1\n",
		"decreasing":     "# HELP a x\n# TYPE a histogram\na_bucket{le=\"1\"} 2\na_bucket{le=\"+Inf\"} 1\na_sum 1\na_count 1\n",
		"inf != count":   "# HELP a x\n# TYPE a histogram\na_bucket{le=\"+Inf\"} 2\na_sum 1\na_count 3\n",
		"no +Inf":        "# HELP a x\n# TYPE a histogram\na_bucket{le=\"1\"} 2\na_sum 1\na_count 2\n",
		"duplicate":      "# HELP a x\n# TYPE a gauge\na 1\na 2\n",
		"bad value":      "# HELP a x\n# TYPE a gauge\na one\n",
		"no newline":     "# HELP a x\n# TYPE a gauge\na 1",
	} {
		if checkExposition(bad) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
