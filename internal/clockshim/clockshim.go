//go:build linux

// Package clockshim steps the wall clock of a process a test starts — a
// redis-server — without touching the host's clock: an LD_PRELOAD library
// (shim.c.in: C, compiled with the C compiler on first use) adds an offset to
// every CLOCK_REALTIME read, gettimeofday and time, and the test changes
// that offset while the process runs. Monotonic clocks are left alone, as
// an NTP step leaves them. Redis reads the wall clock for key expiry and
// TIME, so a Clock lets a test run a server whose clock is ahead, behind,
// or stepped mid-lease.
package clockshim

import (
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

//go:embed shim.c.in
var source []byte

var (
	buildOnce sync.Once
	libPath   string
	buildErr  error
)

// library returns the path of the compiled shim. It is built once per
// source and compiler, in the temporary directory under a name made of
// their hash, and reused by every later test process: no process compiles
// it again, and nothing is left behind per run. A build goes to a
// temporary name first and is renamed into place, so processes that build
// it at once never load a half-written file.
func library() (string, error) {
	buildOnce.Do(func() {
		cc := os.Getenv("CC")
		if cc == "" {
			cc = "cc"
		}
		ccPath, err := exec.LookPath(cc)
		if err != nil {
			buildErr = fmt.Errorf("clockshim: no C compiler %q to build the clock shim: install gcc (apt-get install gcc libc6-dev) or set $CC: %w", cc, err)
			return
		}
		sum := sha256.Sum256(append(append([]byte(ccPath), 0), source...))
		lib := filepath.Join(os.TempDir(), "renewlock-clockshim-"+hex.EncodeToString(sum[:8])+".so")
		if _, err := os.Stat(lib); err == nil {
			libPath = lib
			return
		}
		dir, err := os.MkdirTemp("", "clockshim-")
		if err != nil {
			buildErr = err
			return
		}
		defer os.RemoveAll(dir)
		src, tmp := filepath.Join(dir, "clockshim.c"), filepath.Join(dir, "clockshim.so")
		if err := os.WriteFile(src, source, 0o644); err != nil {
			buildErr = err
			return
		}
		if out, err := exec.Command(ccPath, "-O2", "-shared", "-fPIC", "-Wall", "-o", tmp, src, "-ldl").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("clockshim: %s failed: %v\n%s", cc, err, out)
			return
		}
		if err := os.Rename(tmp, lib); err != nil {
			buildErr = err
			return
		}
		libPath = lib
	})
	return libPath, buildErr
}

// Clock is the offset of one or more processes' wall clock from the
// host's. The zero offset is the host's clock.
type Clock struct {
	mu     sync.Mutex
	f      *os.File
	offset time.Duration
}

// New returns a Clock at offset 0 whose state lives in a file in dir (a
// test's temporary directory). Start processes with Env; Close when done.
func New(dir string) (*Clock, error) {
	if _, err := library(); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "clock-")
	if err != nil {
		return nil, err
	}
	c := &Clock{f: f}
	if err := c.Set(0); err != nil {
		f.Close()
		return nil, err
	}
	return c, nil
}

// Env returns the environment variables that make a process started with
// them read this Clock.
func (c *Clock) Env() []string {
	lib, _ := library() // built by New
	return []string{"LD_PRELOAD=" + lib, "CLOCKSHIM_FILE=" + c.f.Name()}
}

// Set steps the clock to host time + offset (microsecond resolution),
// seen by the processes' next clock read.
func (c *Clock) Set(offset time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.setLocked(offset)
}

func (c *Clock) setLocked(offset time.Duration) error {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], uint64(offset.Microseconds()))
	if _, err := c.f.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("clockshim: setting the offset: %w", err)
	}
	c.offset = offset
	return nil
}

// Step moves the clock by d (forward if positive) and returns the new
// offset.
func (c *Clock) Step(d time.Duration) (time.Duration, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := c.offset + d
	return next, c.setLocked(next)
}

// Offset returns the clock's offset from the host's.
func (c *Clock) Offset() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset
}

// Close releases the Clock's file. Processes still running keep reading
// its last offset.
func (c *Clock) Close() error { return c.f.Close() }
