package metrics

import (
	"compress/gzip"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/backend"
)

// Metric types as a # TYPE line names them (checkExposition).
const (
	typeCounter   = "counter"
	typeGauge     = "gauge"
	typeHistogram = "histogram"
	typeSummary   = "summary"
)

// used is a Metrics whose every vector has a series, so a scrape shows
// every family flanneld can expose.
func used() *Metrics {
	m := New()
	m.EtcdRequest("get", time.Millisecond, io.EOF)
	m.WatchRestart(false)
	m.Pass(backend.PassReport{Full: true, Writes: map[[2]string]int{{"route", "set"}: 1}})
	m.FirewallRepair("IPv4 nat")
	return m
}

func get(t *testing.T, m *Metrics, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", "/metrics", nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("GET /metrics %v: status %d: %s", header, rec.Code, rec.Body)
	}
	return rec
}

// Content negotiation: OpenMetrics to a scraper that asks (Prometheus
// does, with scrape_protocols), gzip when accepted, the text format
// otherwise.
func TestOpenMetricsAndGzip(t *testing.T) {
	m := used()
	rec := get(t, m, map[string]string{"Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"})
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text; version=1.0.0") {
		t.Errorf("OpenMetrics Content-Type %q", ct)
	}
	body := rec.Body.String()
	for _, want := range []string{"# TYPE flannel_reconcile_passes counter\n", `flannel_reconcile_passes_total{kind="full"} 1`, "# TYPE flannel_ready gauge\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("OpenMetrics body lacks %q", want)
		}
	}
	if !strings.HasSuffix(body, "# EOF\n") {
		t.Error("OpenMetrics body does not end with # EOF")
	}

	rec = get(t, m, map[string]string{"Accept-Encoding": "gzip"})
	if rec.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("Accept-Encoding gzip: Content-Encoding %q", rec.Header().Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkExposition(string(plain)); err != nil {
		t.Fatalf("gzipped text: %v", err)
	}

	rec = get(t, m, nil)
	if rec.Header().Get("Content-Encoding") != "" || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Errorf("no Accept: Content-Type %q, Content-Encoding %q", rec.Header().Get("Content-Type"), rec.Header().Get("Content-Encoding"))
	}
}

func TestBuildInfo(t *testing.T) {
	m := New()
	goVersion := runtime.Version()
	if body := scrape(t, m); !strings.Contains(body, `flannel_build_info{backend="",goversion="`+goVersion+`",version=""} 1`+"\n") {
		t.Errorf("fresh build info:\n%s", grepLines(body, "flannel_build_info"))
	}
	m.SetBuildInfo("v0.28.1-3-gabcdef0", "")
	m.SetBuildInfo("v0.28.1-3-gabcdef0", "vxlan")
	body := scrape(t, m)
	if got, want := grepLines(body, "flannel_build_info{"), []string{`flannel_build_info{backend="vxlan",goversion="` + goVersion + `",version="v0.28.1-3-gabcdef0"} 1`}; !slices.Equal(got, want) {
		t.Errorf("build info series %q, want only %q", got, want)
	}
}

func grepLines(body, prefix string) []string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// TestDocsListEveryMetric keeps docs/metrics.md in step with what a scrape
// shows: its flannel table has a row for each flannel_* family and none
// more, and every go_* and process_* family (client_golang's collectors,
// which a client_golang upgrade may extend) is named in the doc.
func TestDocsListEveryMetric(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	scraped := map[string]bool{}
	for _, l := range strings.Split(scrape(t, used()), "\n") {
		if name, ok := strings.CutPrefix(l, "# TYPE "); ok {
			scraped[strings.Fields(name)[0]] = true
		}
	}
	if len(scraped) < 30 {
		t.Fatalf("only %d families scraped", len(scraped))
	}
	rows := map[string]bool{}
	rowRE := regexp.MustCompile("(?m)^\\| `(flannel_[a-z_]+)` \\|")
	for _, m := range rowRE.FindAllStringSubmatch(doc, -1) {
		rows[m[1]] = true
		if !scraped[m[1]] {
			t.Errorf("docs/metrics.md has a row for %s, which flanneld does not expose", m[1])
		}
	}
	for name := range scraped {
		switch {
		case strings.HasPrefix(name, "flannel_"):
			if !rows[name] {
				t.Errorf("%s has no row in docs/metrics.md's table", name)
			}
		case !strings.Contains(doc, "`"+name+"`"):
			t.Errorf("%s is not named in docs/metrics.md", name)
		}
	}
	// And no go_*/process_* name the doc mentions is gone.
	for _, m := range regexp.MustCompile("`((?:go|process)_[a-z_]+)`").FindAllStringSubmatch(doc, -1) {
		if !scraped[m[1]] {
			t.Errorf("docs/metrics.md names %s, which flanneld does not expose", m[1])
		}
	}
}
