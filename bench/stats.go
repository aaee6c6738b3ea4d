package main

import (
	"math"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// dist summarises a latency sample in milliseconds.
type dist struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
	// Q is the distribution's shape for charts: the value at each of
	// quantileLevels (results.QuantileLevels in the JSON), so a few hundred
	// numbers stand for any number of samples.
	Q quantiles `json:"quantiles_ms,omitempty"`
}

// quantileLevels are the probabilities at which dist.Q samples a
// distribution: evenly spaced on the "tail" scale x = -log10(1-p) that
// latency percentile plots use (x = 1 is p90, 2 is p99, 3 is p99.9), from
// p = 0 (the minimum) to p99.99, in steps of 0.025 (161 levels).
var quantileLevels = func() []float64 {
	const steps, top = 160, 4.0
	out := make([]float64, steps+1)
	for i := range out {
		out[i] = 1 - math.Pow(10, -top*float64(i)/steps)
	}
	return out
}()

// quantiles are values in ms, written with 4 significant digits.
type quantiles []float64

func (q quantiles) MarshalJSON() ([]byte, error) {
	b := []byte{'['}
	for i, x := range q {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, x, 'g', 4, 64)
	}
	return append(b, ']'), nil
}

func summarize(d []time.Duration) dist {
	if len(d) == 0 {
		return dist{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	var sum time.Duration
	for _, x := range s {
		sum += x
	}
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return ms(s[max(0, min(i, len(s)-1))])
	}
	out := dist{N: len(s), P50: q(0.50), P99: q(0.99), P999: q(0.999), Max: ms(s[len(s)-1]), Mean: ms(sum / time.Duration(len(s)))}
	out.Q = make(quantiles, len(quantileLevels))
	for i, p := range quantileLevels {
		if p == 0 {
			out.Q[i] = ms(s[0])
		} else {
			out.Q[i] = q(p)
		}
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cpuTime is the CPU time (user + system) this process used so far: the
// client side of every scenario, since the bench runs each library in turn.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
