package metrics

import (
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// goCollector reports the Go runtime metrics client_golang's default Go
// collector does, under its names and help texts, since dashboards use
// them.
type goCollector struct{}

// memStats are client_golang's go_memstats_* metrics.
var memStats = []struct {
	name, help, typ string
	eval            func(*runtime.MemStats) uint64
}{
	{"go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use. Equals to /memory/classes/heap/objects:bytes.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.Alloc }},
	{"go_memstats_alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already. Equals to /gc/heap/allocs:bytes.", typeCounter,
		func(ms *runtime.MemStats) uint64 { return ms.TotalAlloc }},
	{"go_memstats_sys_bytes", "Number of bytes obtained from system. Equals to /memory/classes/total:byte.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.Sys }},
	{"go_memstats_mallocs_total", "Total number of heap objects allocated, both live and gc-ed. Semantically a counter version for go_memstats_heap_objects gauge. Equals to /gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects.", typeCounter,
		func(ms *runtime.MemStats) uint64 { return ms.Mallocs }},
	{"go_memstats_frees_total", "Total number of heap objects frees. Equals to /gc/heap/frees:objects + /gc/heap/tiny/allocs:objects.", typeCounter,
		func(ms *runtime.MemStats) uint64 { return ms.Frees }},
	{"go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes. Equals to /memory/classes/heap/objects:bytes.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.HeapAlloc }},
	{"go_memstats_heap_sys_bytes", "Number of heap bytes obtained from system. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes + /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.HeapSys }},
	{"go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used. Equals to /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.HeapIdle }},
	{"go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.HeapInuse }},
	{"go_memstats_heap_released_bytes", "Number of heap bytes released to OS. Equals to /memory/classes/heap/released:bytes.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.HeapReleased }},
	{"go_memstats_heap_objects", "Number of currently allocated objects. Equals to /gc/heap/objects:objects.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.HeapObjects }},
	{"go_memstats_stack_inuse_bytes", "Number of bytes obtained from system for stack allocator in non-CGO environments. Equals to /memory/classes/heap/stacks:bytes.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.StackInuse }},
	{"go_memstats_stack_sys_bytes", "Number of bytes obtained from system for stack allocator. Equals to /memory/classes/heap/stacks:bytes + /memory/classes/os-stacks:bytes.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.StackSys }},
	{"go_memstats_mspan_inuse_bytes", "Number of bytes in use by mspan structures. Equals to /memory/classes/metadata/mspan/inuse:bytes.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.MSpanInuse }},
	{"go_memstats_mspan_sys_bytes", "Number of bytes used for mspan structures obtained from system. Equals to /memory/classes/metadata/mspan/inuse:bytes + /memory/classes/metadata/mspan/free:bytes.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.MSpanSys }},
	{"go_memstats_mcache_inuse_bytes", "Number of bytes in use by mcache structures. Equals to /memory/classes/metadata/mcache/inuse:bytes.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.MCacheInuse }},
	{"go_memstats_mcache_sys_bytes", "Number of bytes used for mcache structures obtained from system. Equals to /memory/classes/metadata/mcache/inuse:bytes + /memory/classes/metadata/mcache/free:bytes.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.MCacheSys }},
	{"go_memstats_buck_hash_sys_bytes", "Number of bytes used by the profiling bucket hash table. Equals to /memory/classes/profiling/buckets:bytes.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.BuckHashSys }},
	{"go_memstats_gc_sys_bytes", "Number of bytes used for garbage collection system metadata. Equals to /memory/classes/metadata/other:bytes.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.GCSys }},
	{"go_memstats_other_sys_bytes", "Number of bytes used for other system allocations. Equals to /memory/classes/other:bytes.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.OtherSys }},
	{"go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place. Equals to /gc/heap/goal:bytes.", typeGauge,
		func(ms *runtime.MemStats) uint64 { return ms.NextGC }},
}

// runtimeSettings are the runtime/metrics values client_golang's Go
// collector exposes by default.
var runtimeSettings = []struct{ name, help, key string }{
	{"go_gc_gogc_percent", "Heap size target percentage configured by the user, otherwise 100. This value is set by the GOGC environment variable, and the runtime/debug.SetGCPercent function. Sourced from /gc/gogc:percent.", "/gc/gogc:percent"},
	{"go_gc_gomemlimit_bytes", "Go runtime memory limit configured by the user, otherwise math.MaxInt64. This value is set by the GOMEMLIMIT environment variable, and the runtime/debug.SetMemoryLimit function. Sourced from /gc/gomemlimit:bytes.", "/gc/gomemlimit:bytes"},
	{"go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting, or the number of operating system threads that can execute user-level Go code simultaneously. Sourced from /sched/gomaxprocs:threads.", "/sched/gomaxprocs:threads"},
}

func (goCollector) collect(dst []family) []family {
	// ReadMemStats stops the world for a moment: fine once per scrape.
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	for _, s := range memStats {
		dst = append(dst, single(s.name, s.help, s.typ, float64(s.eval(&ms))))
	}
	dst = append(dst, single("go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", typeGauge,
		float64(ms.LastGC)/1e9))

	dst = append(dst,
		single("go_goroutines", "Number of goroutines that currently exist.", typeGauge, float64(runtime.NumGoroutine())),
		gcDurations())
	threads, _ := runtime.ThreadCreateProfile(nil)
	dst = append(dst, single("go_threads", "Number of OS threads created.", typeGauge, float64(threads)))
	info := single("go_info", "Information about the Go environment.", typeGauge, 1)
	info.samples[0].labels = []string{"version", runtime.Version()}
	dst = append(dst, info)

	samples := make([]rtmetrics.Sample, len(runtimeSettings))
	for i, s := range runtimeSettings {
		samples[i].Name = s.key
	}
	rtmetrics.Read(samples)
	for i, s := range runtimeSettings {
		if samples[i].Value.Kind() == rtmetrics.KindUint64 { // KindBad if this Go lacks it
			dst = append(dst, single(s.name, s.help, typeGauge, float64(samples[i].Value.Uint64())))
		}
	}
	return dst
}

// gcDurations is client_golang's go_gc_duration_seconds summary: the
// quartiles of the recent GC pauses, their total and number.
func gcDurations() family {
	var st debug.GCStats
	st.PauseQuantiles = make([]time.Duration, 5)
	debug.ReadGCStats(&st)
	f := family{name: "go_gc_duration_seconds", help: "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.", typ: typeSummary}
	for i, q := range []string{"0", "0.25", "0.5", "0.75", "1"} {
		f.samples = append(f.samples, sample{labels: []string{"quantile", q}, value: st.PauseQuantiles[i].Seconds()})
	}
	f.samples = append(f.samples,
		sample{suffix: "_sum", value: st.PauseTotal.Seconds()},
		sample{suffix: "_count", count: uint64(st.NumGC), isCount: true})
	return f
}
