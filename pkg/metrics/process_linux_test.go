package metrics

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and a ')' of its own.
	line := "4242 (we) ird (name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 123456 1596473344 1786 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	st, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := (procStat{utime: 250, stime: 50, starttime: 123456, vsize: 1596473344, rss: 1786}); st != want {
		t.Errorf("got %+v, want %+v", st, want)
	}
	for _, bad := range []string{"4242 no parenthesis S 1", "1 (x) S 1 2 3", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 50 0 0 20 0 9 0 1 1 1"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestSoftLimit(t *testing.T) {
	limits := `Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max open files            1024                 524288               files     
Max address space         unlimited            unlimited            bytes     
`
	if v, err := softLimit([]byte(limits), "Max open files"); err != nil || v != 1024 {
		t.Errorf("open files: %v %v", v, err)
	}
	if v, err := softLimit([]byte(limits), "Max address space"); err != nil || v != math.MaxUint64 {
		t.Errorf("address space: %v %v", v, err)
	}
	if _, err := softLimit([]byte(limits), "Max processes"); err == nil {
		t.Error("missing row: no error")
	}
}

func TestParseBootTime(t *testing.T) {
	if v, err := parseBootTime([]byte("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n")); err != nil || v != 1700000000 {
		t.Errorf("got %v %v", v, err)
	}
	if _, err := parseBootTime([]byte("cpu 1\n")); err == nil {
		t.Error("no btime: no error")
	}
}

func TestIPOctets(t *testing.T) {
	netstat := "TcpExt: SyncookiesSent Foo\nTcpExt: 0 1\nIpExt: InNoRoutes InOctets OutOctets\nIpExt: 3 147055865 16910795\n"
	if in, out, err := ipOctets([]byte(netstat)); err != nil || in != 147055865 || out != 16910795 {
		t.Errorf("got %v %v %v", in, out, err)
	}
	for _, bad := range []string{"TcpExt: A\nTcpExt: 1\n", "IpExt: InOctets OutOctets\nIpExt: 1\n", "IpExt: InOctets\nIpExt: 1\n", "IpExt: InOctets OutOctets\nIpExt: 1 x\n"} {
		if _, _, err := ipOctets([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// The live /proc of the test process gives every process_ metric, with
// plausible values.
func TestProcessMetrics(t *testing.T) {
	body := scrape(t, New())
	value := func(name string) float64 {
		m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Errorf("missing %s", name)
			return math.NaN()
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		return v
	}
	now := float64(time.Now().Unix())
	if v := value("process_start_time_seconds"); !(v > now-3600 && v <= now+1) {
		t.Errorf("process_start_time_seconds %v, now %v", v, now)
	}
	if v := value("process_resident_memory_bytes"); !(v > 1<<20 && v < 1<<40) {
		t.Errorf("process_resident_memory_bytes %v", v)
	}
	if v := value("process_virtual_memory_bytes"); !(v > value("process_resident_memory_bytes")) {
		t.Errorf("process_virtual_memory_bytes %v", v)
	}
	if v := value("process_open_fds"); !(v >= 3 && v <= value("process_max_fds")) {
		t.Errorf("process_open_fds %v", v)
	}
	if v := value("process_cpu_seconds_total"); !(v >= 0 && v < 3600) {
		t.Errorf("process_cpu_seconds_total %v", v)
	}
	for _, name := range []string{"process_virtual_memory_max_bytes", "process_network_receive_bytes_total", "process_network_transmit_bytes_total"} {
		if !strings.Contains(body, "\n"+name+" ") {
			t.Errorf("missing %s", name)
		}
	}
}
