package main

// Calibration mode: measures, on this machine and at the GOMAXPROCS the
// process runs with, the Go runtime quantities lbsim's timing model needs
// (wake-up latencies, mutex hand-off, the native cost of the harness steps
// and the involuntary pauses a running goroutine sees), and writes them as
// one JSON object. It is a measurement, not a deterministic test.

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
)

const (
	// latencySamples is the number of recorded samples per latency
	// measurement; latencyWarmup more are taken first and dropped.
	latencySamples = 20000
	latencyWarmup  = 200
	// workerPauseIterations harness iterations, each spinning
	// workerSpinFor on the priority worker, measure the worker's pauses.
	workerPauseIterations = 50000
	workerSpinFor         = 20 * time.Microsecond
	// stealIterations harness iterations, each with the worker spinning
	// stealSpin after the hand-over, time the steals of the harness.
	stealIterations = 20000
	stealSpin       = 200 * time.Microsecond
	// harnessWakeIterations is the number of harness iterations whose
	// wake-up after p0's picker is timed; slowWake is where a slow one
	// starts.
	harnessWakeIterations = 100000
	slowWake              = 10 * time.Microsecond
	// stepIterations is the number of instrumented harness iterations.
	stepIterations = 5000
	stepWarmup     = 100
	// spinOverheadSamples batches of spinOverheadBatch time.Now calls.
	spinOverheadSamples = 20000
	spinOverheadBatch   = 64

	// hotParkSpin is the same for the hot variant of wake_running_waker: the
	// receiver has just parked and the runtime's threads are still awake,
	// as in the harness's loop.
	hotParkSpin = 2 * time.Microsecond
	// parkSpin is how long a waker spins before waking, so that the sleeper
	// has certainly parked.
	parkSpin = 100 * time.Microsecond
	// runAfterSend is how long the waker keeps running after the send in
	// wake_running_waker (the priority worker goes on into Remove).
	runAfterSend = 200 * time.Microsecond
	// mutexHold is how long the holder keeps the mutex after the waiter said
	// it is about to lock, and how long it spins after Unlock.
	mutexHold = 100 * time.Microsecond

	// pauseThreshold: a gap between two consecutive clock reads of a spinning
	// goroutine longer than this is an involuntary pause.
	pauseThreshold = 2 * time.Microsecond
	// paretoMin is the lower bound of the Pareto tail fitted to the pauses.
	paretoMin = 20 * time.Microsecond
	// pauseWithHarness and pauseIdle are the spinning times with the harness
	// loop running alongside and without it.
	pauseWithHarness = 5 * time.Second
	pauseIdle        = 2 * time.Second
	// pauseGapCap bounds the preallocated gap buffer, so that the spinner
	// does not allocate while it measures.
	pauseGapCap = 1 << 20

	// calibrationGrace is the harness's grace for late Close calls.
	calibrationGrace = 20 * time.Millisecond
)

// histogramEdges are the log-spaced bucket bounds of the pause histogram; the
// last bucket is [20ms, +inf).
var histogramEdges = []time.Duration{
	2 * time.Microsecond, 5 * time.Microsecond, 10 * time.Microsecond,
	20 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond,
	200 * time.Microsecond, 500 * time.Microsecond, time.Millisecond,
	2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	20 * time.Millisecond,
}

// Calibration is the JSON object calibrate writes. All durations are in ns.
type Calibration struct {
	Version    string         `json:"version"`
	Race       bool           `json:"race"`
	GoMaxProcs int            `json:"gomaxprocs"`
	NumCPU     int            `json:"num_cpu"`
	GoVersion  string         `json:"go_version"`
	Units      string         `json:"units"`
	Samples    map[string]int `json:"samples"`

	WakeRunningWaker Dist `json:"wake_running_waker"`
	// WakeRunningWakerHot is wake_running_waker with the receiver parked
	// only hotParkSpin before the send (the harness's rhythm), and
	// WakeSendCostHot the waker's time in that send.
	WakeRunningWakerHot Dist `json:"wake_running_waker_hot"`
	WakeSendCostHot     Dist `json:"wake_send_cost_hot"`
	// Stolen is the part of wake_running_waker_hot where another P took the
	// receiver while the waker still ran (it ran before the waker stopped),
	// and StolenFraction how often that happened; otherwise the receiver
	// waited until the waker stopped. StolenCold and StolenFractionCold are
	// the same for wake_running_waker.
	Stolen             Dist    `json:"stolen"`
	StolenFraction     float64 `json:"stolen_fraction"`
	StolenCold         Dist    `json:"stolen_cold"`
	StolenFractionCold float64 `json:"stolen_fraction_cold"`
	// WakeSendCost is the waker's time inside the send of wake_running_waker.
	WakeSendCost      Dist      `json:"wake_send_cost"`
	WakeBlockingWaker Dist      `json:"wake_blocking_waker"`
	MutexHandoff      Dist      `json:"mutex_handoff"`
	StepCosts         StepCosts `json:"step_costs"`
	Pauses            Pauses    `json:"pauses"`

	ElapsedS float64 `json:"elapsed_s"`
}

// Dist summarises a sample of durations (ns).
type Dist struct {
	N         int       `json:"n"`
	Mean      float64   `json:"mean"`
	Min       float64   `json:"min"`
	P10       float64   `json:"p10"`
	P25       float64   `json:"p25"`
	P50       float64   `json:"p50"`
	P75       float64   `json:"p75"`
	P90       float64   `json:"p90"`
	P99       float64   `json:"p99"`
	P999      float64   `json:"p99.9"`
	Max       float64   `json:"max"`
	Lognormal Lognormal `json:"lognormal"`
}

// Lognormal is a lognormal fitted by quantiles: the median is p50 and sigma
// makes p90 the distribution's 90th percentile.
type Lognormal struct {
	Median float64 `json:"median"`
	Sigma  float64 `json:"sigma"`
}

// StepCosts are the native costs of the harness's steps, measured on real
// grpc-go from the harness goroutine.
type StepCosts struct {
	Iterations int `json:"iterations"`
	Leaks      int `json:"leaks"`
	// Build: Build + UpdateClientConnState until p0 is built.
	Build Dist `json:"build"`
	// P0TransientFailure: p0 reports TRANSIENT_FAILURE until p1 is built.
	P0TransientFailure Dist `json:"p0_transient_failure"`
	// P1Ready: p1 reports READY until the parent has p1's picker.
	P1Ready Dist `json:"p1_ready"`
	// P0Ready: p0 reports READY until the parent has p0's picker.
	P0Ready Dist `json:"p0_ready"`
	// Close: priority Close right after p0's picker reached the parent (d=0).
	Close Dist `json:"close"`
	// Iteration: the whole iteration, leak check included.
	Iteration Dist `json:"iteration"`
	// SpinOverhead: the cost of one time.Now call, as in spin's loop.
	SpinOverhead Dist `json:"spin_overhead"`
	// HarnessWake is the harness's own wake-up after p0's picker (from the
	// worker's UpdateState on the parent to the harness running), over
	// harnessWakeIterations iterations at d = 0; HarnessWakeSlow is its part
	// of at least slowWake (the harness did not get the worker's processor
	// as soon as the worker blocked: the worker stalled, and the harness
	// was stolen or handed off late), and SlowFraction how often.
	HarnessWake     Dist    `json:"harness_wake"`
	HarnessWakeSlow Dist    `json:"harness_wake_slow"`
	SlowFraction    float64 `json:"slow_fraction"`
	// HarnessSteal is the harness's wake-up after p0's picker while the
	// worker keeps running (it spins stealSpin right after the hand-over,
	// so the harness cannot get the worker's processor): the steals alone,
	// over stealIterations iterations; StealFraction is how often the
	// harness was stolen before the worker stopped spinning.
	HarnessSteal  Dist    `json:"harness_steal"`
	StealFraction float64 `json:"steal_fraction"`
}

// Pauses are the gaps a goroutine spinning on the clock sees.
type Pauses struct {
	ThresholdNs int64    `json:"threshold_ns"`
	Harness     PauseRun `json:"harness"`
	Idle        PauseRun `json:"idle"`
	// Worker is what the priority worker itself sees inside the race's
	// window: in workerPauseIterations harness iterations, the worker spins
	// workerSpinFor on the clock right after it handed p0's picker to the
	// parent (the harness parked in its runnext), recording the gaps.
	Worker PauseRun `json:"worker"`
}

// PauseRun is one spinning measurement.
type PauseRun struct {
	// WallNs is the time from the spinner's first clock read to its last;
	// SpinNs is WallNs without the gaps (the time it really ran).
	WallNs     int64 `json:"wall_ns"`
	SpinNs     int64 `json:"spin_ns"`
	Reads      int64 `json:"reads"`
	Gaps       int   `json:"gaps"`
	GapTotalNs int64 `json:"gap_total_ns"`
	// GapsPerS is gaps per second of WallNs; TailPerS counts only the gaps
	// of at least the Pareto minimum.
	GapsPerS  float64     `json:"gaps_per_s"`
	TailPerS  float64     `json:"tail_per_s"`
	GapSizes  Dist        `json:"gap_sizes"`
	Histogram []Bucket    `json:"histogram"`
	Pareto    ParetoFit   `json:"pareto"`
	Truncated bool        `json:"truncated,omitempty"`
	Harness   *HarnessRun `json:"harness_loop,omitempty"`
}

// HarnessRun is what the harness loop did while the spinner measured.
type HarnessRun struct {
	Iterations int64  `json:"iterations"`
	Leaks      int64  `json:"leaks"`
	Error      string `json:"error,omitempty"`
}

// Bucket counts the gaps in [Lo, Hi); Hi is absent for the last bucket.
type Bucket struct {
	Label string `json:"label"`
	LoNs  int64  `json:"lo_ns"`
	HiNs  *int64 `json:"hi_ns,omitempty"`
	Count int    `json:"count"`
}

// ParetoFit is a Pareto tail fitted by maximum likelihood to the gaps of at
// least MinNs; Alpha is 0 when there are none.
type ParetoFit struct {
	MinNs int64   `json:"min_ns"`
	N     int     `json:"n"`
	Alpha float64 `json:"alpha"`
}

// calibrate runs the measurements one after the other (about 20 s in all)
// and writes the Calibration to w as one indented JSON object.
func calibrate(w io.Writer, version string, race bool) error {
	start := time.Now()
	h, err := newHarness(calibrationGrace)
	if err != nil {
		return err
	}
	c := Calibration{
		Version:    version,
		Race:       race,
		GoMaxProcs: runtime.GOMAXPROCS(0),
		NumCPU:     runtime.NumCPU(),
		GoVersion:  runtime.Version(),
		Units:      "ns",
		Samples: map[string]int{
			"wake_running_waker":  latencySamples,
			"wake_running_hot":    latencySamples,
			"wake_send_cost":      latencySamples,
			"wake_blocking_waker": latencySamples,
			"mutex_handoff":       latencySamples,
			"step_costs":          stepIterations,
			"spin_overhead":       spinOverheadSamples,
		},
		Pauses: Pauses{ThresholdNs: int64(pauseThreshold)},
	}

	runtime.GC()
	lat, sendCost := wakeRunningWaker(latencySamples, parkSpin)
	c.StolenCold, c.StolenFractionCold = stolenPart(lat)
	c.WakeRunningWaker, c.WakeSendCost = summarize(lat), summarize(sendCost)
	runtime.GC()
	lat, sendCost = wakeRunningWaker(latencySamples, hotParkSpin)
	c.Stolen, c.StolenFraction = stolenPart(lat)
	c.WakeRunningWakerHot, c.WakeSendCostHot = summarize(lat), summarize(sendCost)
	runtime.GC()
	c.WakeBlockingWaker = summarize(wakeBlockingWaker(latencySamples))
	runtime.GC()
	c.MutexHandoff = summarize(mutexHandoff(latencySamples))
	runtime.GC()
	if c.StepCosts, err = stepCosts(h, stepIterations); err != nil {
		return err
	}
	runtime.GC()
	if err := harnessWake(h, &c.StepCosts); err != nil {
		return err
	}
	runtime.GC()
	if err := harnessSteal(h, &c.StepCosts); err != nil {
		return err
	}
	runtime.GC()
	c.StepCosts.SpinOverhead = summarize(spinOverhead(spinOverheadSamples))
	runtime.GC()
	c.Pauses.Harness = measurePauses(h, pauseWithHarness)
	runtime.GC()
	c.Pauses.Idle = measurePauses(nil, pauseIdle)
	runtime.GC()
	if c.Pauses.Worker, err = workerPauses(h); err != nil {
		return err
	}
	c.ElapsedS = time.Since(start).Seconds()

	out, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	out = append(out, '\n')
	_, err = w.Write(out)
	return err
}

// wakeRunningWaker models the harness's wake-up: the priority worker sends
// p0's READY picker on a buffered channel the parked harness goroutine is
// receiving on, and keeps running afterwards. lat is from just before the
// send to the receiver running. With one P the receiver can only run once the
// waker stops, so it includes the waker's runAfterSend. sendCost is the
// waker's own time inside the send (readying the receiver, and waking an idle
// P's thread when there is one).
func wakeRunningWaker(n int, park time.Duration) (lat, sendCost []float64) {
	ch := make(chan time.Time, 1)
	ack := make(chan struct{}, 1)
	lat = make([]float64, latencyWarmup+n)
	sendCost = make([]float64, latencyWarmup+n)
	go func() {
		for i := range lat {
			t0 := <-ch
			lat[i] = float64(time.Since(t0))
			ack <- struct{}{}
		}
	}()
	for i := range lat {
		spin(park) // the receiver parks in the meantime
		t0 := time.Now()
		ch <- t0
		sendCost[i] = float64(time.Since(t0))
		spin(runAfterSend)
		<-ack
	}
	return lat[latencyWarmup:], sendCost[latencyWarmup:]
}

// stolenPart summarises the wake-ups that happened while the waker still
// ran (another P stole the receiver), and returns how often that was.
func stolenPart(lat []float64) (Dist, float64) {
	var stolen []float64
	for _, l := range lat {
		if l < float64(runAfterSend)*0.9 {
			stolen = append(stolen, l)
		}
	}
	return summarize(stolen), float64(len(stolen)) / float64(len(lat))
}

// wakeBlockingWaker is the classic ping-pong: the waker blocks right after
// the send (waiting for the reply), so the receiver may run on the waker's
// own P. The latency is one way, from just before the send to the receiver
// running.
func wakeBlockingWaker(n int) []float64 {
	ch := make(chan time.Time)
	reply := make(chan struct{})
	lat := make([]float64, latencyWarmup+n)
	go func() {
		for i := range lat {
			t0 := <-ch
			lat[i] = float64(time.Since(t0))
			reply <- struct{}{}
		}
	}()
	for range lat {
		spin(parkSpin)
		ch <- time.Now()
		<-reply
	}
	return lat[latencyWarmup:]
}

// mutexHandoff models a goroutine blocked in sync.Mutex.Lock while a running
// goroutine unlocks and goes on running: the latency is from just before
// Unlock to Lock returning in the waiter.
func mutexHandoff(n int) []float64 {
	var (
		mu sync.Mutex
		t0 time.Time // written before Unlock, read after Lock
	)
	begin := make(chan struct{})
	locking := make(chan struct{})
	done := make(chan struct{})
	lat := make([]float64, latencyWarmup+n)
	go func() {
		for i := range lat {
			<-begin
			locking <- struct{}{}
			mu.Lock()
			lat[i] = float64(time.Since(t0))
			mu.Unlock()
			done <- struct{}{}
		}
	}()
	for range lat {
		mu.Lock()
		begin <- struct{}{}
		<-locking
		spin(mutexHold) // the waiter blocks in Lock in the meantime
		t0 = time.Now()
		mu.Unlock()
		spin(mutexHold)
		<-done
	}
	return lat[latencyWarmup:]
}

// stepTimes are the durations of one instrumented iteration's steps.
type stepTimes struct {
	build, p0TF, p1Ready, p0Ready, close, total time.Duration
	leaked                                      bool
}

// timedIterate is iterate(0) with the clock read between the steps.
func (h *harness) timedIterate() (stepTimes, error) {
	var st stepTimes
	t0 := time.Now()
	w := newWorld()
	current.Store(w)
	pb := h.builder.Build(&parentCC{w: w}, balancer.BuildOptions{})
	fail := func(e error) (stepTimes, error) {
		pb.Close()
		return st, e
	}
	if err := pb.UpdateClientConnState(balancer.ClientConnState{BalancerConfig: h.config}); err != nil {
		return fail(fmt.Errorf("config: %v", err))
	}
	if err := expect(w.built, "p0", "build of"); err != nil {
		return fail(err)
	}
	t1 := time.Now()
	w.mu.Lock()
	p0 := w.probes["p0"]
	w.mu.Unlock()
	p0.report(connectivity.TransientFailure)
	if err := expect(w.built, "p1", "build of"); err != nil {
		return fail(err)
	}
	t2 := time.Now()
	w.mu.Lock()
	p1 := w.probes["p1"]
	w.mu.Unlock()
	p1.report(connectivity.Ready)
	if err := expect(w.ready, "p1", "READY picker of"); err != nil {
		return fail(err)
	}
	t3 := time.Now()
	p0.report(connectivity.Ready)
	if err := expect(w.ready, "p0", "READY picker of"); err != nil {
		return fail(err)
	}
	t4 := time.Now()
	pb.Close()
	t5 := time.Now()
	st.leaked = true
	deadline := t5.Add(h.grace)
	for {
		if p0.closed.Load() && p1.closed.Load() {
			st.leaked = false
			break
		}
		if !time.Now().Before(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	st.build, st.p0TF, st.p1Ready = t1.Sub(t0), t2.Sub(t1), t3.Sub(t2)
	st.p0Ready, st.close, st.total = t4.Sub(t3), t5.Sub(t4), time.Since(t0)
	return st, nil
}

// stepCosts runs n instrumented iterations (after a short warm-up).
func stepCosts(h *harness, n int) (StepCosts, error) {
	var build, p0TF, p1Ready, p0Ready, cl, total []float64
	leaks := 0
	for i := -stepWarmup; i < n; i++ {
		st, err := h.timedIterate()
		if err != nil {
			return StepCosts{}, fmt.Errorf("step costs, iteration %d: %v", i, err)
		}
		if i < 0 {
			continue
		}
		if st.leaked {
			leaks++
		}
		build = append(build, float64(st.build))
		p0TF = append(p0TF, float64(st.p0TF))
		p1Ready = append(p1Ready, float64(st.p1Ready))
		p0Ready = append(p0Ready, float64(st.p0Ready))
		cl = append(cl, float64(st.close))
		total = append(total, float64(st.total))
	}
	return StepCosts{
		Iterations:         n,
		Leaks:              leaks,
		Build:              summarize(build),
		P0TransientFailure: summarize(p0TF),
		P1Ready:            summarize(p1Ready),
		P0Ready:            summarize(p0Ready),
		Close:              summarize(cl),
		Iteration:          summarize(total),
	}, nil
}

// nowSink keeps the compiler from dropping the clock reads.
var nowSink time.Time

// spinOverhead is the cost of one time.Now call, each sample the mean over a
// batch of spinOverheadBatch calls.
func spinOverhead(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		start := time.Now()
		var t time.Time
		for j := 0; j < spinOverheadBatch; j++ {
			t = time.Now()
		}
		nowSink = t
		out[i] = float64(time.Since(start)) / spinOverheadBatch
	}
	return out
}

// measurePauses spins on the clock in its own goroutine for dur and records
// every gap between consecutive reads longer than pauseThreshold: the time
// the spinner was not running (preemption, GC assists and stop-the-world,
// the OS descheduling the thread). With h non-nil the harness loop,
// iterate(0), runs in another goroutine meanwhile.
func measurePauses(h *harness, dur time.Duration) PauseRun {
	var (
		stop atomic.Bool
		wg   sync.WaitGroup
		loop HarnessRun
	)
	if h != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				leaked, err := h.iterate(0)
				if err != nil {
					loop.Error = err.Error()
					return
				}
				loop.Iterations++
				if leaked {
					loop.Leaks++
				}
			}
		}()
	}

	type spinResult struct {
		gaps      []int64
		wall      time.Duration
		reads     int64
		truncated bool
	}
	res := make(chan spinResult)
	go func() {
		gaps := make([]int64, 0, pauseGapCap)
		var reads int64
		truncated := false
		first := time.Now()
		last := first
		for last.Sub(first) < dur {
			now := time.Now()
			reads++
			if d := now.Sub(last); d > pauseThreshold {
				if len(gaps) < cap(gaps) {
					gaps = append(gaps, int64(d))
				} else {
					truncated = true
				}
			}
			last = now
		}
		res <- spinResult{gaps: gaps, wall: last.Sub(first), reads: reads, truncated: truncated}
	}()
	r := <-res
	stop.Store(true)
	wg.Wait()

	var total int64
	xs := make([]float64, len(r.gaps))
	for i, g := range r.gaps {
		total += g
		xs[i] = float64(g)
	}
	pr := PauseRun{
		WallNs:     int64(r.wall),
		SpinNs:     int64(r.wall) - total,
		Reads:      r.reads,
		Gaps:       len(r.gaps),
		GapTotalNs: total,
		GapSizes:   summarize(xs),
		Histogram:  histogram(r.gaps),
		Pareto:     fitPareto(r.gaps, int64(paretoMin)),
		Truncated:  r.truncated,
	}
	if secs := r.wall.Seconds(); secs > 0 {
		pr.GapsPerS = float64(pr.Gaps) / secs
		pr.TailPerS = float64(pr.Pareto.N) / secs
	}
	if h != nil {
		pr.Harness = &loop
	}
	return pr
}

// summarize sorts xs in place and returns its summary.
func summarize(xs []float64) Dist {
	if len(xs) == 0 {
		return Dist{}
	}
	sort.Float64s(xs)
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	d := Dist{
		N:    len(xs),
		Mean: sum / float64(len(xs)),
		Min:  xs[0],
		P10:  quantile(xs, 0.10),
		P25:  quantile(xs, 0.25),
		P50:  quantile(xs, 0.50),
		P75:  quantile(xs, 0.75),
		P90:  quantile(xs, 0.90),
		P99:  quantile(xs, 0.99),
		P999: quantile(xs, 0.999),
		Max:  xs[len(xs)-1],
	}
	d.Lognormal = fitLognormal(d.P50, d.P90)
	return d
}

// quantile is the q-quantile of sorted xs, interpolating linearly between
// order statistics.
func quantile(sorted []float64, q float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	pos := q * float64(n-1)
	i := int(math.Floor(pos))
	if i >= n-1 {
		return sorted[n-1]
	}
	f := pos - float64(i)
	return sorted[i] + f*(sorted[i+1]-sorted[i])
}

// z90 is the standard normal's 90th percentile.
const z90 = 1.2816

// fitLognormal returns the lognormal with median p50 whose 90th percentile is
// p90; sigma is 0 when the quantiles do not allow a fit.
func fitLognormal(p50, p90 float64) Lognormal {
	l := Lognormal{Median: p50}
	if p50 > 0 && p90 > p50 {
		l.Sigma = math.Log(p90/p50) / z90
	}
	return l
}

// fitPareto fits a Pareto tail with minimum lo to the xs of at least lo:
// alpha = n / sum(ln(x/min)), the maximum-likelihood estimate.
func fitPareto(xs []int64, lo int64) ParetoFit {
	p := ParetoFit{MinNs: lo}
	s := 0.0
	for _, x := range xs {
		if x >= lo {
			p.N++
			s += math.Log(float64(x) / float64(lo))
		}
	}
	if p.N > 0 && s > 0 {
		p.Alpha = float64(p.N) / s
	}
	return p
}

// histogram counts xs in the buckets bounded by histogramEdges; values below
// the first edge are not counted.
func histogram(xs []int64) []Bucket {
	bs := make([]Bucket, len(histogramEdges))
	for i, lo := range histogramEdges {
		bs[i].LoNs = int64(lo)
		if i+1 < len(histogramEdges) {
			hi := int64(histogramEdges[i+1])
			bs[i].HiNs = &hi
			bs[i].Label = lo.String() + "-" + histogramEdges[i+1].String()
		} else {
			bs[i].Label = lo.String() + "-+inf"
		}
	}
	for _, x := range xs {
		// The first edge above x; x belongs to the bucket before it.
		i := sort.Search(len(histogramEdges), func(i int) bool { return int64(histogramEdges[i]) > x })
		if i > 0 {
			bs[i-1].Count++
		}
	}
	return bs
}

// harnessWake times the harness's wake-up after p0's picker over
// harnessWakeIterations iterations of the real harness at d = 0.
func harnessWake(h *harness, sc *StepCosts) error {
	saved := wakeStats
	wakeStats = true
	defer func() { wakeStats = saved }()
	h.wakes, h.leakWakes = h.wakes[:0], h.leakWakes[:0]
	for i := 0; i < harnessWakeIterations; i++ {
		if _, err := h.iterate(0); err != nil {
			return err
		}
	}
	var slow []float64
	for _, w := range h.wakes {
		if w >= float64(slowWake) {
			slow = append(slow, w)
		}
	}
	sc.SlowFraction = float64(len(slow)) / float64(len(h.wakes))
	sc.HarnessWake, sc.HarnessWakeSlow = summarize(h.wakes), summarize(slow)
	h.wakes, h.leakWakes = h.wakes[:0], h.leakWakes[:0]
	return nil
}

// workerSpin, when set, makes the parent's UpdateState spin that long on the
// priority worker after p0's READY picker, recording gaps in workerGaps.
var (
	workerSpin   time.Duration
	workerGaps   []int64
	workerSpinNs int64
	workerWallNs int64
	workerReads  int64
)

// spinOnWorker spins for d on the calling goroutine (the priority worker),
// recording every gap between two clock reads longer than pauseThreshold.
func spinOnWorker(d time.Duration) {
	first := time.Now()
	last := first
	for last.Sub(first) < d {
		now := time.Now()
		workerReads++
		if g := now.Sub(last); g > pauseThreshold {
			if len(workerGaps) < cap(workerGaps) {
				workerGaps = append(workerGaps, int64(g))
			}
			workerSpinNs -= int64(g)
		}
		last = now
	}
	workerWallNs += int64(last.Sub(first))
	workerSpinNs += int64(last.Sub(first))
}

// workerPauses measures the pauses the priority worker sees in the race's
// window, over workerPauseIterations harness iterations.
func workerPauses(h *harness) (PauseRun, error) {
	workerGaps = make([]int64, 0, pauseGapCap)
	workerSpinNs, workerWallNs, workerReads = 0, 0, 0
	workerSpin = workerSpinFor
	defer func() { workerSpin = 0 }()
	var loop HarnessRun
	for i := 0; i < workerPauseIterations; i++ {
		leaked, err := h.iterate(0)
		if err != nil {
			return PauseRun{}, err
		}
		loop.Iterations++
		if leaked {
			loop.Leaks++
		}
	}
	var total int64
	xs := make([]float64, len(workerGaps))
	for i, g := range workerGaps {
		total += g
		xs[i] = float64(g)
	}
	pr := PauseRun{
		WallNs:     workerWallNs,
		SpinNs:     workerSpinNs,
		Reads:      workerReads,
		Gaps:       len(workerGaps),
		GapTotalNs: total,
		GapSizes:   summarize(xs),
		Histogram:  histogram(workerGaps),
		Pareto:     fitPareto(workerGaps, int64(paretoMin)),
		Truncated:  len(workerGaps) == cap(workerGaps),
		Harness:    &loop,
	}
	if secs := float64(workerWallNs) / 1e9; secs > 0 {
		pr.GapsPerS = float64(pr.Gaps) / secs
		pr.TailPerS = float64(pr.Pareto.N) / secs
	}
	return pr, nil
}

// harnessSteal times the harness's wake-up after p0's picker while the
// worker spins stealSpin right after handing it over: the harness can then
// only run if another P steals it.
func harnessSteal(h *harness, sc *StepCosts) error {
	saved := wakeStats
	wakeStats = true
	workerGaps = make([]int64, 0, pauseGapCap)
	workerSpin = stealSpin
	defer func() { wakeStats, workerSpin = saved, 0 }()
	h.wakes, h.leakWakes = h.wakes[:0], h.leakWakes[:0]
	for i := 0; i < stealIterations; i++ {
		if _, err := h.iterate(0); err != nil {
			return err
		}
	}
	var stolen []float64
	for _, w := range h.wakes {
		if w < float64(stealSpin)*0.9 {
			stolen = append(stolen, w)
		}
	}
	sc.StealFraction = float64(len(stolen)) / float64(len(h.wakes))
	sc.HarnessSteal = summarize(stolen)
	h.wakes, h.leakWakes = h.wakes[:0], h.leakWakes[:0]
	return nil
}
