package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/Shopify/toxiproxy/v2"

	"github.com/renewlock/renewlock/chaos/internal/workload"
)

// Every fault helper runs in the test goroutine (redistest fails the test
// from there), records itself in the History, and returns when the fault
// is over. Durations of faults are wall-clock by nature.

// PauseRedis freezes the lock Redis (SIGSTOP) for d, then resumes it:
// connections stay open and nothing is answered, like a VM freeze.
func (e *Env) PauseRedis(d time.Duration) {
	end := e.H.AddFault(FaultRedisPause, "")
	e.Redis.Pause()
	e.Sleep(d)
	e.Redis.Resume()
	end()
}

// RestartRedis kills the lock Redis (SIGKILL, no persistence: every key is
// lost) and starts it again on the same port after delay; delay 0 restarts
// at once, delay ≥ TTL is the "delayed restart" mitigation.
func (e *Env) RestartRedis(delay time.Duration) {
	end := e.H.AddFault(FaultRedisKill, "")
	e.Redis.Kill()
	e.Sleep(delay)
	e.Redis.Restart()
	end()
}

// addToxic adds a toxiproxy toxic to p on stream ("upstream": client to
// Redis, "downstream": Redis to client).
func (e *Env) addToxic(p *toxiproxy.Proxy, typ, stream string, attrs map[string]any) {
	e.T.Helper()
	b, err := json.Marshal(map[string]any{
		"name": typ + "_" + stream, "type": typ, "stream": stream, "toxicity": 1.0, "attributes": attrs,
	})
	if err != nil {
		e.T.Fatalf("toxic %s: %v", typ, err)
	}
	if _, err := p.Toxics.AddToxicJson(bytes.NewReader(b)); err != nil {
		e.T.Fatalf("adding toxic %s/%s to %s: %v", typ, stream, p.Name, err)
	}
}

// withToxic applies a toxic to the proxies of the in-process clients given
// by index for d, then removes it.
func (e *Env) withToxic(kind string, clients []int, d time.Duration, typ string, streams []string, attrs map[string]any) {
	var ends []func()
	for _, i := range clients {
		p := e.Proxies[i]
		ends = append(ends, e.H.AddFault(kind, p.Name))
		for _, s := range streams {
			e.addToxic(p, typ, s, attrs)
		}
	}
	e.Sleep(d)
	for n, i := range clients {
		e.Proxies[i].Toxics.ResetToxics(context.Background())
		ends[n]()
	}
}

// Latency adds latency ± jitter to every reply Redis sends to the given
// in-process clients, for d.
func (e *Env) Latency(clients []int, latency, jitter, d time.Duration) {
	e.withToxic(FaultLatency, clients, d, "latency", []string{"downstream"},
		map[string]any{"latency": latency.Milliseconds(), "jitter": jitter.Milliseconds()})
}

// Bandwidth limits the given in-process clients' traffic to and from Redis
// to kbps kilobytes per second in each direction, for d.
func (e *Env) Bandwidth(clients []int, kbps int, d time.Duration) {
	e.withToxic(FaultBandwidth, clients, d, "bandwidth", []string{"upstream", "downstream"},
		map[string]any{"rate": kbps})
}

// HoldingClient waits until some in-process client holds a lock and returns
// its index, so that a fault aimed at one client hits a holder.
func (e *Env) HoldingClient(timeout time.Duration) int {
	e.T.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		for i, p := range e.Proxies {
			if e.holding[p.Name] > 0 {
				e.mu.Unlock()
				return i
			}
		}
		e.mu.Unlock()
		time.Sleep(5 * time.Millisecond) // poll: holds change every few ms
	}
	e.T.Fatalf("no in-process client held a lock within %v", timeout)
	return -1
}

// Partition black-holes one in-process client: every byte either way is
// dropped, nothing is closed, for d. When the partition heals, the
// connections that lost data are closed (as TCP would after data loss) and
// the client must reconnect.
func (e *Env) Partition(client int, d time.Duration) {
	e.withToxic(FaultPartition, []int{client}, d, "timeout", []string{"upstream", "downstream"},
		map[string]any{"timeout": 0})
}

// workWait bounds the wait for a worker process that holds a lock. It can
// be long: locks are served first come, first served, and with six
// in-process loops per key holding about 2×TTL each a process's turn may
// be many seconds away (its bounded Acquire times out and queues again at
// the back). 5 s was too short once in a 30 s client-crash run.
const workWait = 30 * time.Second

// waitWork returns a worker process that has just started its
// un-interruptible work before a write, so it holds a lock right now.
func (e *Env) waitWork(timeout time.Duration) *Proc {
	e.T.Helper()
	for {
		select {
		case <-e.workWait:
			continue // stale: drain
		default:
		}
		break
	}
	deadline := time.After(timeout)
	// With several kinds of lock, prefer for half the time a process that
	// holds locks of two keys or more, so one fault hits several kinds.
	picky := time.After(timeout / 2)
	if len(e.Cfg.Kinds) < 2 {
		picky = nil
	}
	choosy := picky != nil
	for {
		select {
		case <-picky:
			choosy, picky = false, nil
		case name := <-e.workWait:
			if p := e.Proc(name); p != nil && !p.killed.Load() && (!choosy || e.keysHeld(name) >= 2) {
				return p
			}
		case <-deadline:
			e.T.Fatalf("no worker process started a write within %v", timeout)
			return nil
		}
	}
}

// keysHeld returns how many keys process name holds locks of.
func (e *Env) keysHeld(name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.heldKeys[name] {
		if c > 0 {
			n++
		}
	}
	return n
}

// StopProc freezes a worker process that holds a lock (SIGSTOP), in the
// middle of the work it does before writing, for d; then continues it
// (SIGCONT). It wakes with a dead lease and its pending write goes out.
func (e *Env) StopProc(d time.Duration) {
	p := e.waitWork(workWait)
	end := e.H.AddFault(FaultProcStop, p.Name)
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		e.T.Fatalf("SIGSTOP %s: %v", p.Name, err)
	}
	e.Sleep(d)
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		e.T.Fatalf("SIGCONT %s: %v", p.Name, err)
	}
	end()
}

// KillProc SIGKILLs a worker process that holds a lock, and starts a fresh
// one in its place.
func (e *Env) KillProc() {
	p := e.waitWork(workWait)
	e.H.AddFault(FaultProcKill, p.Name)
	p.killed.Store(true)
	t := workload.Mono()
	if err := p.cmd.Process.Kill(); err != nil {
		e.T.Fatalf("SIGKILL %s: %v", p.Name, err)
	}
	e.H.Killed(p.Name, t)
	<-p.exited
	e.SpawnProc()
}

// ScriptFlush empties Redis's script cache: every client's next EVALSHA
// gets NOSCRIPT.
func (e *Env) ScriptFlush() {
	e.H.AddFault(FaultScriptFlush, "")
	if err := e.Admin.ScriptFlush(context.Background()).Err(); err != nil {
		e.T.Fatalf("SCRIPT FLUSH: %v", err)
	}
}

// KillLockConns closes every lock connection (CLIENT KILL), pub/sub
// included; the observer and admin connections survive. It returns how many
// it killed.
func (e *Env) KillLockConns() int {
	e.T.Helper()
	e.H.AddFault(FaultClientKill, "")
	ctx := context.Background()
	list, err := e.Admin.ClientList(ctx).Result()
	if err != nil {
		e.T.Fatalf("CLIENT LIST: %v", err)
	}
	n := 0
	for _, line := range strings.Split(list, "\n") {
		var id, name string
		for _, f := range strings.Fields(line) {
			switch {
			case strings.HasPrefix(f, "id="):
				id = f[3:]
			case strings.HasPrefix(f, "name="):
				name = f[5:]
			}
		}
		if id == "" || !strings.HasPrefix(name, LockClientPrefix) {
			continue
		}
		// An error means it went away by itself meanwhile.
		if e.Admin.ClientKillByFilter(ctx, "ID", id).Val() == 1 {
			n++
		}
	}
	return n
}

// OOM makes every denyoom command fail with an OOM error for d
// (maxmemory 1 byte, noeviction), then lifts the limit.
func (e *Env) OOM(d time.Duration) {
	end := e.H.AddFault(FaultOOM, "")
	e.configSet("maxmemory-policy", "noeviction")
	e.configSet("maxmemory", "1")
	e.Sleep(d)
	e.configSet("maxmemory", "0")
	end()
}

// MaxClients lowers maxclients to 1 and kills the lock connections, so no
// lock client can connect again for d ("ERR max number of clients
// reached"); then restores the limit.
func (e *Env) MaxClients(d time.Duration) {
	end := e.H.AddFault(FaultMaxClients, "")
	old, err := e.Admin.ConfigGet(context.Background(), "maxclients").Result()
	if err != nil {
		e.T.Fatalf("CONFIG GET maxclients: %v", err)
	}
	e.configSet("maxclients", "1")
	e.KillLockConns()
	e.Sleep(d)
	e.configSet("maxclients", old["maxclients"])
	end()
}

func (e *Env) configSet(param, value string) {
	e.T.Helper()
	if err := e.Admin.ConfigSet(context.Background(), param, value).Err(); err != nil {
		e.T.Fatalf("CONFIG SET %s %s: %v", param, value, err)
	}
}

// String describes the fault for logs.
func (f Fault) String() string {
	return fmt.Sprintf("%s(%s)", f.Kind, f.Target)
}
