// Package chaos is renewlock's fault-injection suite: it runs many lock
// clients (goroutines and separate worker processes) against real
// redis-server processes, injects faults (process pauses and crashes, Redis
// restarts, latency, bandwidth cuts and partitions through an in-process
// toxiproxy, script and connection kills, OOM and maxclients errors), records
// every step on one monotonic clock, and checks the history:
//
//	(a) validity intervals of holders of one key do not overlap, except where
//	    the documented limits say they may (then the overlap is measured);
//	(b) the fenced register's accepted writes are monotone in token order,
//	    and acquisitions get strictly increasing tokens — checked for
//	    linearizability with porcupine;
//	(c) a lease loss is signalled before Redis expires the key (lead time);
//	(d) after a holder crashes or freezes, another holder gets the lock
//	    within TTL plus a small slack;
//	(e) no error is swallowed: every holder whose lease ended early is told.
//
// Run it with `go test -race -v -run TestChaos` in this directory; see
// RELIABILITY.md at the repository root for results.
package chaos

import (
	"encoding/json"
	"os"
	"sync"
	"time"

	"github.com/renewlock/renewlock/chaos/internal/workload"
)

// Fault kinds recorded in a History.
const (
	FaultRedisPause   = "redis-pause"   // redis-server SIGSTOPped
	FaultRedisKill    = "redis-kill"    // redis-server killed (data lost)
	FaultProcStop     = "proc-stop"     // a worker process SIGSTOPped
	FaultProcKill     = "proc-kill"     // a worker process SIGKILLed
	FaultPartition    = "partition"     // black hole between one client and Redis
	FaultLatency      = "latency"       // added latency and jitter
	FaultBandwidth    = "bandwidth"     // bandwidth cut
	FaultScriptFlush  = "script-flush"  // SCRIPT FLUSH
	FaultClientKill   = "client-kill"   // CLIENT KILL of the lock connections
	FaultOOM          = "oom"           // maxmemory 1, noeviction
	FaultMaxClients   = "maxclients"    // maxclients 1 (plus CLIENT KILL)
	FaultRedisRestart = "redis-restart" // redis-server started again
)

// Fault is one injected fault: what, against whom (a worker name prefix such
// as "p3" or "c0"; empty for Redis-wide faults), and when, on the
// workload.Mono clock. End is 0 for instantaneous faults.
type Fault struct {
	Kind       string
	Target     string
	Start, End int64
}

// Sample is one observation of a lock key by the observer: at Sent the key
// had owner (Owned), token Token and remaining TTL PTTL.
type Sample struct {
	Key   string
	Sent  int64
	Owned bool
	Token uint64
	PTTL  time.Duration
	// Shares are the holders of a semaphore or read-write lock.
	Shares []ShareSample
}

// ShareSample is one holder of a shared lock as the observer saw it: its
// token and how long its lease had left in Redis (x<id> − TIME).
type ShareSample struct {
	Token  uint64
	Left   time.Duration
	Holder string // the holder text: the client's or process's name (WithHolder)
}

// History is everything recorded during one scenario. It is safe for
// concurrent use while recording.
type History struct {
	mu      sync.Mutex
	events  []workload.Event
	faults  []Fault
	samples []Sample
	kills   map[string]int64 // worker process → when it was SIGKILLed
	notes   []string         // harness problems that are violations of (e)
	onEvent func(workload.Event)
	stalls  []workload.Event // KindStall events, gathered by Check

	// Filled when recording is over.
	log map[string][]workload.LogEntry
	end int64
	// clockOffset maps the Redis server clock to Mono: mono ≥ server − offset.
	clockOffset int64
}

// NewHistory returns an empty History.
func NewHistory() *History {
	return &History{kills: make(map[string]int64)}
}

// Emit records one workload event.
func (h *History) Emit(e workload.Event) {
	h.mu.Lock()
	h.events = append(h.events, e)
	f := h.onEvent
	h.mu.Unlock()
	if f != nil {
		f(e)
	}
}

// AddFault records a fault that has started; call the returned function
// when it ends (not needed for instantaneous faults).
func (h *History) AddFault(kind, target string) (end func()) {
	h.mu.Lock()
	i := len(h.faults)
	h.faults = append(h.faults, Fault{Kind: kind, Target: target, Start: workload.Mono()})
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		h.faults[i].End = workload.Mono()
		h.mu.Unlock()
	}
}

// Killed records that worker process name was SIGKILLed at t.
func (h *History) Killed(name string, t int64) {
	h.mu.Lock()
	h.kills[name] = t
	h.mu.Unlock()
}

// Sample records one observation.
func (h *History) Sample(s Sample) {
	h.mu.Lock()
	h.samples = append(h.samples, s)
	h.mu.Unlock()
}

// Note records a harness-level problem (a worker that crashed on its own, a
// write the register cannot account for); each is a violation of (e).
func (h *History) Note(msg string) {
	h.mu.Lock()
	h.notes = append(h.notes, msg)
	h.mu.Unlock()
}

// Dump writes the whole history as JSON (events, faults, samples, the
// register logs), for looking into a failed scenario by hand.
func (h *History) Dump(path string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	data, err := json.Marshal(struct {
		Events  []workload.Event
		Faults  []Fault
		Samples []Sample
		Log     map[string][]workload.LogEntry
		End     int64
		Offset  int64
	}{h.events, h.faults, h.samples, h.log, h.end, h.clockOffset})
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
