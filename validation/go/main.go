// Command lbsim-validate drives the real priority load balancer of grpc-go
// through the race of grpc-go issue #7783 and counts how often a child policy
// outlives Close. It uses only grpc-go's public API: importing the xds
// package registers priority_experimental, which is built on a fake parent
// ClientConn with children of the probe policy registered here.
//
// One iteration:
//
//  1. build priority_experimental with priorities [p0, p1]; p0 is built;
//  2. p0 reports TRANSIENT_FAILURE: the priority worker builds p1;
//  3. p1 reports READY: the parent receives p1's picker;
//  4. p0 reports READY: the worker pushes p0's picker to the parent, then
//     demotes p1 through the balancergroup's Remove into the child cache;
//  5. as soon as the parent has p0's picker (the test's RPC reaching S0), the
//     harness waits the delay d, spinning on the monotonic clock, and calls
//     Close on the priority balancer;
//  6. a leak is a probe built in this iteration and not closed within the
//     grace after Close returned.
//
// The same script is the lbsim scenario scenarios/validation_probe.toml.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	// Registers priority_experimental and the other xDS policies.
	_ "google.golang.org/grpc/xds"
)

const probeName = "lbsim_probe"

// world is what one iteration shares between the harness, the fake parent
// ClientConn and the probes it builds.
type world struct {
	mu     sync.Mutex
	probes map[string]*probe
	// built receives a probe's name when it first gets its config.
	built chan string
	// ready receives the name of the child whose READY picker reached the
	// parent.
	ready chan string
	// sentNs is when the parent got p0's READY picker (with -wake-stats).
	sentNs atomic.Int64
}

func newWorld() *world {
	return &world{
		probes: make(map[string]*probe),
		built:  make(chan string, 8),
		ready:  make(chan string, 8),
	}
}

// current is the iteration being built; probes remember their own world.
var current atomic.Pointer[world]

// probe is a child policy that reports the states the harness commands and
// records whether it was closed.
type probe struct {
	w      *world
	cc     balancer.ClientConn
	name   string
	closed atomic.Bool
}

type probeConfig struct {
	serviceconfig.LoadBalancingConfig
	Name string `json:"name"`
}

type probeBuilder struct{}

func (probeBuilder) Name() string { return probeName }

func (probeBuilder) Build(cc balancer.ClientConn, _ balancer.BuildOptions) balancer.Balancer {
	return &probe{w: current.Load(), cc: cc}
}

func (probeBuilder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	var c probeConfig
	if err := json.Unmarshal(js, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

func (p *probe) UpdateClientConnState(s balancer.ClientConnState) error {
	c, ok := s.BalancerConfig.(*probeConfig)
	if !ok {
		return fmt.Errorf("probe: config of type %T", s.BalancerConfig)
	}
	if p.name == "" {
		p.name = c.Name
		p.w.mu.Lock()
		p.w.probes[c.Name] = p
		p.w.mu.Unlock()
		p.w.built <- c.Name
	}
	return nil
}

func (p *probe) ResolverError(error)                                        {}
func (p *probe) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {}
func (p *probe) ExitIdle()                                                  {}
func (p *probe) Close()                                                     { p.closed.Store(true) }

// report makes the probe report a state to its parent, as a child policy's
// UpdateState does.
func (p *probe) report(s connectivity.State) {
	p.cc.UpdateState(balancer.State{ConnectivityState: s, Picker: &probePicker{child: p.name, state: s}})
}

type probePicker struct {
	child string
	state connectivity.State
}

func (pp *probePicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	if pp.state != connectivity.Ready {
		return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
	}
	return balancer.PickResult{}, nil
}

// parentCC is the fake parent ClientConn: it tells the harness which child's
// READY picker the priority policy published.
type parentCC struct {
	balancer.ClientConn
	w *world
}

func (c *parentCC) UpdateState(s balancer.State) {
	if pp, ok := s.Picker.(*probePicker); ok && s.ConnectivityState == connectivity.Ready {
		if wakeStats && pp.child == "p0" {
			c.w.sentNs.Store(time.Now().UnixNano())
		}
		select {
		case c.w.ready <- pp.child:
		default:
		}
		if workerSpin > 0 && pp.child == "p0" {
			spinOnWorker(workerSpin)
		}
	}
}

func (c *parentCC) ResolveNow(resolver.ResolveNowOptions) {}

func init() { balancer.Register(probeBuilder{}) }

const priorityConfig = `{
  "priorities": ["p0", "p1"],
  "children": {
    "p0": {"config": [{"lbsim_probe": {"name": "p0"}}]},
    "p1": {"config": [{"lbsim_probe": {"name": "p1"}}]}
  }
}`

type harness struct {
	builder balancer.Builder
	config  serviceconfig.LoadBalancingConfig
	grace   time.Duration
	// wakes are the harness's wake-up latencies after p0's picker (with
	// -wake-stats), and leakWakes those of the iterations that leaked.
	wakes, leakWakes []float64
}

// wakeStats: time the harness's wake-up after p0's picker (two clock reads
// per iteration, one of them on the priority worker).
var wakeStats bool

func newHarness(grace time.Duration) (*harness, error) {
	bb := balancer.Get("priority_experimental")
	if bb == nil {
		return nil, fmt.Errorf("priority_experimental is not registered")
	}
	parser, ok := bb.(balancer.ConfigParser)
	if !ok {
		return nil, fmt.Errorf("priority_experimental has no config parser")
	}
	cfg, err := parser.ParseConfig(json.RawMessage(priorityConfig))
	if err != nil {
		return nil, fmt.Errorf("parse priority config: %v", err)
	}
	return &harness{builder: bb, config: cfg, grace: grace}, nil
}

// expect waits for want on ch, failing after a generous timeout (a stuck
// iteration is a harness bug, not a leak).
func expect(ch chan string, want, what string) error {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case got := <-ch:
			if got == want {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("timed out waiting for %s %s", what, want)
		}
	}
}

func spin(d time.Duration) {
	if d <= 0 {
		return
	}
	start := time.Now()
	for time.Since(start) < d {
	}
}

// iterate runs one iteration and reports whether a probe leaked.
func (h *harness) iterate(d time.Duration) (leaked bool, err error) {
	w := newWorld()
	current.Store(w)
	pb := h.builder.Build(&parentCC{w: w}, balancer.BuildOptions{})
	if err := pb.UpdateClientConnState(balancer.ClientConnState{BalancerConfig: h.config}); err != nil {
		pb.Close()
		return false, fmt.Errorf("config: %v", err)
	}
	if err := expect(w.built, "p0", "build of"); err != nil {
		pb.Close()
		return false, err
	}
	w.mu.Lock()
	p0 := w.probes["p0"]
	w.mu.Unlock()
	p0.report(connectivity.TransientFailure)
	if err := expect(w.built, "p1", "build of"); err != nil {
		pb.Close()
		return false, err
	}
	w.mu.Lock()
	p1 := w.probes["p1"]
	w.mu.Unlock()
	p1.report(connectivity.Ready)
	if err := expect(w.ready, "p1", "READY picker of"); err != nil {
		pb.Close()
		return false, err
	}
	p0.report(connectivity.Ready)
	if err := expect(w.ready, "p0", "READY picker of"); err != nil {
		pb.Close()
		return false, err
	}
	var wake float64
	if wakeStats {
		wake = float64(time.Now().UnixNano() - w.sentNs.Load())
		h.wakes = append(h.wakes, wake)
	}
	spin(d)
	pb.Close()
	if p0.closed.Load() && p1.closed.Load() {
		return false, nil
	}
	if wakeStats {
		h.leakWakes = append(h.leakWakes, wake)
	}
	deadline := time.Now().Add(h.grace)
	for time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		if p0.closed.Load() && p1.closed.Load() {
			return false, nil
		}
	}
	return true, nil
}

// Row is one measured point, one JSON line of the output.
type Row struct {
	Version    string  `json:"version"`
	Race       bool    `json:"race"`
	GoMaxProcs int     `json:"gomaxprocs"`
	DelayNs    int64   `json:"delay_ns"`
	Iterations int64   `json:"iterations"`
	Leaks      int64   `json:"leaks"`
	Rate       float64 `json:"rate"`
	CI95Low    float64 `json:"ci95_low"`
	CI95High   float64 `json:"ci95_high"`
	ElapsedS   float64 `json:"elapsed_s"`
	NsPerIter  float64 `json:"ns_per_iter"`
	GoVersion  string  `json:"go_version"`
}

// wilson is the Wilson score interval at 95 %.
func wilson(k, n int64) (float64, float64) {
	if n == 0 {
		return 0, 1
	}
	const z = 1.959963984540054
	nf, p := float64(n), float64(k)/float64(n)
	den := 1 + z*z/nf
	centre := (p + z*z/(2*nf)) / den
	half := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / den
	return math.Max(0, centre-half), math.Min(1, centre+half)
}

func parseDelays(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("bad delay %q: write durations such as 0,1us,2us,5us", f)
		}
		out = append(out, d)
	}
	return out, nil
}

func main() {
	iters := flag.Int64("iters", 100000, "iterations per delay")
	delays := flag.String("delays", "0,1us,2us,5us,10us,20us", "comma-separated delays between p0's READY picker reaching the parent and Close")
	grace := flag.Duration("grace", 20*time.Millisecond, "how long after Close returns a child may still be closed")
	version := flag.String("version", "unknown", "grpc-go version this binary was built with (for the output)")
	race := flag.Bool("race", false, "set when built with -race (for the output)")
	maxLeaks := flag.Int64("max-leaks", -1, "exit 1 if a delay has more leaks than this (-1: no limit)")
	mode := flag.String("mode", "race", "race: the #7783 iteration; calibrate: runtime measurements")
	flag.BoolVar(&wakeStats, "wake-stats", false, "report the harness's wake-up latency after p0's picker, overall and in leaking iterations (to stderr)")
	flag.Parse()

	if *mode == "calibrate" {
		if err := calibrate(os.Stdout, *version, *race); err != nil {
			fmt.Fprintln(os.Stderr, "lbsim-validate:", err)
			os.Exit(2)
		}
		return
	}
	ds, err := parseDelays(*delays)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lbsim-validate:", err)
		os.Exit(2)
	}
	h, err := newHarness(*grace)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lbsim-validate:", err)
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	failed := false
	for _, d := range ds {
		var leaks int64
		start := time.Now()
		for i := int64(0); i < *iters; i++ {
			leaked, err := h.iterate(d)
			if err != nil {
				fmt.Fprintf(os.Stderr, "lbsim-validate: iteration %d: %v\n", i, err)
				os.Exit(1)
			}
			if leaked {
				leaks++
			}
		}
		el := time.Since(start)
		lo, hi := wilson(leaks, *iters)
		row := Row{
			Version: *version, Race: *race, GoMaxProcs: runtime.GOMAXPROCS(0), DelayNs: d.Nanoseconds(),
			Iterations: *iters, Leaks: leaks, Rate: float64(leaks) / float64(*iters),
			CI95Low: lo, CI95High: hi, ElapsedS: el.Seconds(),
			NsPerIter: float64(el.Nanoseconds()) / float64(*iters), GoVersion: runtime.Version(),
		}
		if err := enc.Encode(row); err != nil {
			fmt.Fprintln(os.Stderr, "lbsim-validate:", err)
			os.Exit(2)
		}
		if wakeStats {
			all := summarize(h.wakes)
			fmt.Fprintf(os.Stderr, "wake after p0's picker, d=%v: n=%d p10=%.0f p50=%.0f p90=%.0f p99=%.0f ns; fraction under 10us: %.4f; leaking iterations: %v\n",
				d, all.N, all.P10, all.P50, all.P90, all.P99, fractionBelow(h.wakes, 10000), h.leakWakes)
			h.wakes, h.leakWakes = h.wakes[:0], h.leakWakes[:0]
		}
		if *maxLeaks >= 0 && leaks > *maxLeaks {
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

// fractionBelow is the fraction of xs below x.
func fractionBelow(xs []float64, x float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	n := 0
	for _, v := range xs {
		if v < x {
			n++
		}
	}
	return float64(n) / float64(len(xs))
}
