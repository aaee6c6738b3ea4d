package cookbook_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/renewlock/renewlock/docs/cookbook"
)

// Hosts whose cron fires together run the job once; a host that fires a
// little late still skips it, for minHold.
func TestRunOnce(t *testing.T) {
	ctx := context.Background()
	var runs atomic.Int32
	job := func(ctx context.Context, token uint64) error {
		runs.Add(1)
		time.Sleep(20 * time.Millisecond)
		return ctx.Err()
	}
	const minHold = 500 * time.Millisecond
	var wg sync.WaitGroup
	ranOn := make(chan bool, 3)
	for range 3 {
		host := newClient(t)
		wg.Go(func() {
			ran, err := cookbook.RunOnce(ctx, host, t.Name(), minHold, job)
			if err != nil {
				t.Error(err)
			}
			ranOn <- ran
		})
	}
	// A late host: the job has run, but the lock is still held.
	for runs.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the job is done
	late := newClient(t)
	if ran, err := cookbook.RunOnce(ctx, late, t.Name(), minHold, job); ran || err != nil {
		t.Errorf("late host: ran %v, %v", ran, err)
	}
	wg.Wait()
	close(ranOn)
	n := 0
	for ran := range ranOn {
		if ran {
			n++
		}
	}
	if n != 1 || runs.Load() != 1 {
		t.Fatalf("%d hosts ran, the job ran %d times; want 1", n, runs.Load())
	}
	// The next run, after minHold, runs.
	if ran, err := cookbook.RunOnce(ctx, late, t.Name(), minHold, job); !ran || err != nil || runs.Load() != 2 {
		t.Errorf("next run: ran %v, %v, %d runs", ran, err, runs.Load())
	}
}
