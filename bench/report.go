package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// report is everything one bench run measured.
type report struct {
	Date      string   `json:"date"`
	Nproc     int      `json:"nproc"`
	CPU       string   `json:"cpu"`
	Kernel    string   `json:"kernel"`
	GoVersion string   `json:"go"`
	LoadStart string   `json:"loadavg_start"`
	Flags     []string `json:"flags"`
	Scenarios []result `json:"results"`
}

func newReport(o *options) *report {
	r := &report{
		Date:      time.Now().UTC().Format(time.RFC3339),
		Nproc:     gomaxprocs(),
		CPU:       cpuModel(),
		Kernel:    kernel(),
		LoadStart: loadAvg(),
		Flags:     os.Args[1:],
	}
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		r.GoVersion = strings.TrimSpace(string(out))
	}
	return r
}

func (r *report) machine() string {
	return fmt.Sprintf("machine: %d CPUs (%s), kernel %s, %s; load average at start %s\n",
		r.Nproc, r.CPU, r.Kernel, r.GoVersion, r.LoadStart)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// table renders the results as Markdown: one table per scenario, one column
// per system in the order run, then each other system's figures as ratios to
// the baseline's.
func (r *report) table() string {
	var b bytes.Buffer
	byScenario := map[string][]result{}
	var order []string
	for _, res := range r.Scenarios {
		if _, ok := byScenario[res.Scenario]; !ok {
			order = append(order, res.Scenario)
		}
		byScenario[res.Scenario] = append(byScenario[res.Scenario], res)
	}
	for _, sc := range order {
		rs := byScenario[sc]
		var base *result
		for i := range rs {
			if rs[i].System == sysBaseline {
				base = &rs[i]
			}
		}
		head, rule := "| figure |", "|---|"
		for _, x := range rs {
			head += " " + columnName(x) + " |"
			rule += "---|"
		}
		if base != nil {
			for _, x := range rs {
				if x.System != sysBaseline {
					head += " " + x.System + " / baseline |"
					rule += "---|"
				}
			}
		}
		fmt.Fprintf(&b, "### %s\n\n%s\n%s\n", sc, head, rule)
		row := func(name string, get func(*result) float64, format func(float64) string) {
			line := "| " + name + " |"
			for i := range rs {
				line += " " + format(get(&rs[i])) + " |"
			}
			if base != nil {
				for i := range rs {
					if rs[i].System != sysBaseline {
						line += " " + ratio(get(&rs[i]), get(base)) + " |"
					}
				}
			}
			fmt.Fprintln(&b, line)
		}
		text := func(name string, get func(*result) string) {
			line := "| " + name + " |"
			for i := range rs {
				line += " " + get(&rs[i]) + " |"
			}
			if base != nil {
				line += strings.Repeat(" |", len(rs)-1)
			}
			fmt.Fprintln(&b, line)
		}
		num := func(f float64) string { return fmt.Sprintf("%.0f", f) }
		msf := func(f float64) string { return fmt.Sprintf("%.2f ms", f) }
		mb := func(f float64) string { return mib(int64(f)) }
		row("accepted webhooks", func(x *result) float64 { return float64(x.Accepted) }, num)
		if sc == "backlog" {
			row("pile-up accepted webhooks/s", func(x *result) float64 { return x.PileupPerSec }, num)
			row("peak RSS during pile-up", func(x *result) float64 { return float64(x.PileupPeakRSS) }, mb)
			row("drain deliveries/s", func(x *result) float64 { return x.DrainDeliveriesPerSec }, num)
			row("drain events/s (deliveries/s / sinks)", func(x *result) float64 { return x.DrainDeliveriesPerSec / float64(x.Sinks) }, num)
			row("peak RSS during drain", func(x *result) float64 { return float64(x.DrainPeakRSS) }, mb)
		} else {
			row("accepted webhooks/s", func(x *result) float64 { return x.AcceptedPerSec }, num)
			row("e2e delivered events/s (at every sink)", func(x *result) float64 { return x.EventsPerSec }, num)
			row("e2e deliveries/s (all sinks)", func(x *result) float64 { return x.DeliveriesPerSec }, num)
			row("ingest ack p50", func(x *result) float64 { return x.Ack.P50 }, msf)
			if sc == "sequential" {
				row("ingest ack p90", func(x *result) float64 { return x.Ack.P90 }, msf)
			}
			row("ingest ack p99", func(x *result) float64 { return x.Ack.P99 }, msf)
			row("ingest ack p99.9", func(x *result) float64 { return x.Ack.P999 }, msf)
			if sc == "sequential" {
				row("ingest ack max", func(x *result) float64 { return x.Ack.Max }, msf)
			}
			row("send -> sink p50", func(x *result) float64 { return x.E2E.P50 }, msf)
			row("send -> sink p99", func(x *result) float64 { return x.E2E.P99 }, msf)
			row("peak RSS", func(x *result) float64 { return float64(x.PeakRSS) }, mb)
		}
		us := func(f float64) string { return fmt.Sprintf("%.0f µs", f) }
		row("process CPU per accepted webhook", func(x *result) float64 { return x.CPUPerEvent }, us)
		row("bench (generator + sinks) CPU per webhook", func(x *result) float64 { return x.BenchCPUPerEvent }, us)
		pgRows(&b, rs, base)
		row("rejected + failed sends", func(x *result) float64 { return float64(x.Rejected + x.Failed) }, num)
		row("redeliveries at sinks", func(x *result) float64 { return float64(x.Redeliveries) }, num)
		row("TCP connections the sinks accepted", func(x *result) float64 { return float64(x.SinkConns) }, num)
		text("completeness", func(x *result) string {
			if x.Complete() {
				return "every sink got every accepted message"
			}
			return fmt.Sprintf("MISSING per sink %v", x.Missing)
		})
		text("load average after", func(x *result) string { return x.LoadAvg })
		fmt.Fprintln(&b)
	}
	return b.String()
}

// columnName names a system's column; the relay's says which store it ran.
func columnName(x result) string {
	if x.Store != "" {
		return fmt.Sprintf("%s (%s)", x.System, x.Store)
	}
	return x.System
}
