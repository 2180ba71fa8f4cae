package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
)

// processCollector reports client_golang's process_* metrics from /proc.
// A file that cannot be read leaves its metrics out of the scrape, as
// client_golang does.
type processCollector struct{}

// userHZ is the unit of the times in /proc/self/stat (USER_HZ, 100 on
// every Linux architecture Go supports).
const userHZ = 100

func (processCollector) collect(dst []family) []family {
	if st, err := readStat("/proc/self/stat"); err == nil {
		dst = append(dst,
			single("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", typeCounter, float64(st.utime+st.stime)/userHZ),
			single("process_virtual_memory_bytes", "Virtual memory size in bytes.", typeGauge, float64(st.vsize)),
			single("process_resident_memory_bytes", "Resident memory size in bytes.", typeGauge, float64(st.rss*uint64(os.Getpagesize()))))
		if boot, err := bootTime(); err == nil {
			dst = append(dst, single("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", typeGauge,
				float64(boot)+float64(st.starttime)/userHZ))
		}
	}
	if n, err := openFDs(); err == nil {
		dst = append(dst, single("process_open_fds", "Number of open file descriptors.", typeGauge, float64(n)))
	}
	if data, err := os.ReadFile("/proc/self/limits"); err == nil {
		if v, err := softLimit(data, "Max open files"); err == nil {
			dst = append(dst, single("process_max_fds", "Maximum number of open file descriptors.", typeGauge, v))
		}
		if v, err := softLimit(data, "Max address space"); err == nil {
			dst = append(dst, single("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", typeGauge, v))
		}
	}
	// Counted by the kernel for the whole network namespace, not the
	// process; client_golang reports them under these names all the same.
	if data, err := os.ReadFile("/proc/self/net/netstat"); err == nil {
		if in, out, err := ipOctets(data); err == nil {
			dst = append(dst,
				single("process_network_receive_bytes_total", "Number of bytes received by the process over the network.", typeCounter, in),
				single("process_network_transmit_bytes_total", "Number of bytes sent by the process over the network.", typeCounter, out))
		}
	}
	return dst
}

// procStat holds the fields of /proc/PID/stat we use.
type procStat struct {
	utime, stime, starttime, vsize, rss uint64
}

func readStat(path string) (procStat, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return procStat{}, err
	}
	return parseStat(data)
}

// parseStat parses a /proc/PID/stat line. The command name (field 2) is in
// parentheses and may hold spaces and parentheses itself: the fields we
// want are counted from the last ')'.
func parseStat(data []byte) (procStat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, errors.New("parse /proc stat: no ')' after the command name")
	}
	// f[0] is field 3 (state) of proc(5).
	f := strings.Fields(string(data[i+1:]))
	const utime, stime, starttime, vsize, rss = 14 - 3, 15 - 3, 22 - 3, 23 - 3, 24 - 3
	if len(f) <= rss {
		return procStat{}, fmt.Errorf("parse /proc stat: %d fields after the command name, want more than %d", len(f), rss)
	}
	var st procStat
	for _, x := range []struct {
		dst *uint64
		i   int
	}{{&st.utime, utime}, {&st.stime, stime}, {&st.starttime, starttime}, {&st.vsize, vsize}, {&st.rss, rss}} {
		v, err := strconv.ParseUint(f[x.i], 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("parse /proc stat field %d: %w", x.i+3, err)
		}
		*x.dst = v
	}
	return st, nil
}

// bootTime is the btime line of /proc/stat: the boot time in Unix seconds.
// It does not change, so it is read once.
var bootTime = sync.OnceValues(func() (uint64, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseBootTime(data)
})

func parseBootTime(data []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "btime "); ok {
			v, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse /proc/stat btime: %w", err)
			}
			return v, nil
		}
	}
	return 0, errors.New("parse /proc/stat: no btime line")
}

// openFDs counts /proc/self/fd. Since Linux 6.2 the directory's size is
// the count, without listing it.
func openFDs() (int, error) {
	if fi, err := os.Stat("/proc/self/fd"); err == nil && fi.Size() > 0 {
		return int(fi.Size()), nil
	}
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	return len(names), err
}

// softLimit is the soft limit of the named row of a /proc/PID/limits
// ("Max open files   1024   4096   files"); "unlimited" is the largest
// uint64, as procfs (and so client_golang) reports it.
func softLimit(data []byte, name string) (float64, error) {
	for line := range strings.SplitSeq(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		if f[0] == "unlimited" {
			return math.MaxUint64, nil
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc limits %q: %w", name, err)
		}
		return float64(v), nil
	}
	return 0, fmt.Errorf("parse /proc limits: no %q row", name)
}

// ipOctets reads InOctets and OutOctets from /proc/PID/net/netstat, where
// "IpExt:" heads two lines: the field names, then their values.
func ipOctets(data []byte) (in, out float64, err error) {
	var names []string
	for line := range strings.SplitSeq(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "IpExt:")
		if !ok {
			continue
		}
		if names == nil {
			names = strings.Fields(rest)
			continue
		}
		values := strings.Fields(rest)
		if len(values) != len(names) {
			return 0, 0, fmt.Errorf("parse /proc netstat: %d IpExt names, %d values", len(names), len(values))
		}
		found := 0
		for i, n := range names {
			var dst *float64
			switch n {
			case "InOctets":
				dst = &in
			case "OutOctets":
				dst = &out
			default:
				continue
			}
			v, err := strconv.ParseUint(values[i], 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("parse /proc netstat IpExt %s: %w", n, err)
			}
			*dst = float64(v)
			found++
		}
		if found != 2 {
			return 0, 0, errors.New("parse /proc netstat: no IpExt InOctets and OutOctets")
		}
		return in, out, nil
	}
	return 0, 0, errors.New("parse /proc netstat: no IpExt lines")
}
