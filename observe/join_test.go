package observe_test

import (
	"testing"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/observe"
)

// Join calls every observer's callbacks in order, skips nil observers and
// fields, and leaves a field nil when nobody sets it.
func TestJoin(t *testing.T) {
	var calls []string
	a := &renewlock.Observer{
		Acquired: func(renewlock.AcquireEvent) { calls = append(calls, "a.acquired") },
		Released: func(renewlock.ReleaseEvent) { calls = append(calls, "a.released") },
	}
	b := &renewlock.Observer{
		Acquired: func(renewlock.AcquireEvent) { calls = append(calls, "b.acquired") },
		Lost:     func(renewlock.LostEvent) { calls = append(calls, "b.lost") },
	}
	j := observe.Join(a, nil, b, &renewlock.Observer{})
	if j.Renewed != nil {
		t.Error("Renewed is set though no observer sets it")
	}
	j.Acquired(renewlock.AcquireEvent{})
	j.Lost(renewlock.LostEvent{})
	j.Released(renewlock.ReleaseEvent{})
	want := []string{"a.acquired", "b.acquired", "b.lost", "a.released"}
	if len(calls) != len(want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Fatalf("calls %v, want %v", calls, want)
		}
	}
	if e := observe.Join(); e.Acquired != nil || e.Renewed != nil || e.Lost != nil || e.Released != nil {
		t.Error("Join() sets a field")
	}
}
