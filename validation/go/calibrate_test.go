package main

import (
	"math"
	"testing"
	"time"
)

func TestQuantileInterpolates(t *testing.T) {
	xs := []float64{10, 20, 30, 40, 50}
	for _, c := range []struct{ q, want float64 }{
		{0, 10}, {0.25, 20}, {0.5, 30}, {0.6, 34}, {1, 50},
	} {
		if got := quantile(xs, c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	xs := make([]float64, 1001)
	for i := range xs {
		xs[len(xs)-1-i] = float64(i) // reversed: summarize sorts
	}
	d := summarize(xs)
	if d.N != 1001 || d.Min != 0 || d.Max != 1000 || d.Mean != 500 || d.P50 != 500 || d.P90 != 900 || d.P999 != 999 {
		t.Errorf("summarize = %+v", d)
	}
	if want := math.Log(900.0/500.0) / z90; math.Abs(d.Lognormal.Sigma-want) > 1e-12 || d.Lognormal.Median != 500 {
		t.Errorf("lognormal = %+v, want median 500 sigma %v", d.Lognormal, want)
	}
	if (summarize(nil) != Dist{}) {
		t.Errorf("summarize(nil) is not zero")
	}
}

func TestFitLognormalRecoversSigma(t *testing.T) {
	// p90 of lognormal(median m, sigma s) is m*exp(z90*s).
	l := fitLognormal(2000, 2000*math.Exp(z90*0.7))
	if math.Abs(l.Sigma-0.7) > 1e-12 || l.Median != 2000 {
		t.Errorf("fitLognormal = %+v", l)
	}
	if l := fitLognormal(0, 10); l.Sigma != 0 {
		t.Errorf("degenerate fit has sigma %v", l.Sigma)
	}
}

func TestFitPareto(t *testing.T) {
	// Pareto(min 1, alpha 2) at the quantiles (i+0.5)/n: x = (1-u)^(-1/2).
	const n = 100000
	var xs []int64
	for i := 0; i < n; i++ {
		u := (float64(i) + 0.5) / n
		xs = append(xs, int64(1e6*math.Pow(1-u, -0.5)))
	}
	xs = append(xs, 10, 500000) // below the minimum: ignored
	p := fitPareto(xs, 1e6)
	if p.N != n || math.Abs(p.Alpha-2) > 0.01 {
		t.Errorf("fitPareto = %+v, want n %d alpha 2", p, n)
	}
	if p := fitPareto([]int64{1, 2}, 1e6); p.N != 0 || p.Alpha != 0 {
		t.Errorf("empty tail = %+v", p)
	}
}

func TestHistogram(t *testing.T) {
	us := int64(time.Microsecond)
	bs := histogram([]int64{1 * us, 2 * us, 4 * us, 5 * us, 999 * us, int64(time.Millisecond), int64(time.Second)})
	if len(bs) != 13 || bs[12].HiNs != nil || *bs[0].HiNs != 5*us {
		t.Fatalf("buckets = %+v", bs)
	}
	want := map[int]int{0: 2, 1: 1, 7: 1, 8: 1, 12: 1}
	for i, b := range bs {
		if b.Count != want[i] {
			t.Errorf("bucket %s: count %d, want %d", b.Label, b.Count, want[i])
		}
	}
}
