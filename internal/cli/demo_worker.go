package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

// DemoWorkerCommand is the hidden subcommand that runs one demo worker.
const DemoWorkerCommand = "demo-worker"

// DemoWorkerConfig configures one demo worker process. The demo drives it
// with one command per line on Stdin (acquire, write VALUE, release; EOF
// ends it) and reads one event per line on Stdout (ready PID, waiting
// HOLDER, acquired TOKEN, write-ok TOKEN, write-rejected TOKEN HIGHEST,
// released, lost CAUSE, error MSG).
type DemoWorkerConfig struct {
	Redis    RedisTarget
	Prefix   string
	Name     string
	Key      string
	Register string // key of the fenced register
	TTL      time.Duration
	Stdin    io.Reader
	Stdout   io.Writer
}

// fencedWriteScript is the protected resource of the demo: a register that
// remembers the largest fencing token it has seen and rejects writes with a
// smaller one. Tokens are compared as decimal strings (length, then text),
// so no precision is lost to Lua numbers.
var fencedWriteScript = redis.NewScript(`
local last = redis.call('HGET', KEYS[1], 'token')
local tok = ARGV[1]
if last and (#tok < #last or (#tok == #last and tok < last)) then
  return {0, last}
end
redis.call('HSET', KEYS[1], 'token', tok, 'value', ARGV[2])
redis.call('PEXPIRE', KEYS[1], 600000)
return {1, tok}
`)

// fencedWrite writes value to the register with token; ok is false (and
// highest the token that beat it) when the register has seen a larger one.
func fencedWrite(ctx context.Context, rdb redis.Scripter, register string, token uint64, value string) (ok bool, highest string, err error) {
	res, err := fencedWriteScript.Run(ctx, rdb, []string{register}, fmt.Sprint(token), value).Slice()
	if err != nil {
		return false, "", err
	}
	if len(res) != 2 {
		return false, "", fmt.Errorf("fenced write returned %d values", len(res))
	}
	n, _ := res[0].(int64)
	s, _ := res[1].(string)
	return n == 1, s, nil
}

// DemoWorker runs one worker of the demo until its stdin ends.
func DemoWorker(ctx context.Context, w *DemoWorkerConfig) error {
	var mu sync.Mutex
	emit := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w.Stdout, format+"\n", args...)
	}
	rdb, err := NewRedisClient(w.Redis)
	if err != nil {
		return err
	}
	defer rdb.Close()
	client, err := renewlock.New(rdb,
		renewlock.WithTTL(w.TTL),
		renewlock.WithKeyPrefix(w.Prefix),
		renewlock.WithHolder(fmt.Sprintf("%s (pid %d)", w.Name, os.Getpid())),
		renewlock.WithLogger(nil))
	if err != nil {
		return Usagef("%s", libErr(err))
	}
	var watchers sync.WaitGroup
	defer watchers.Wait() // after Close, which ends every Done
	defer client.Close()

	emit("ready %d", os.Getpid())
	var lock *renewlock.Lock
	in := bufio.NewScanner(w.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		opCtx, cancel := context.WithTimeout(ctx, time.Minute)
		switch cmd {
		case "acquire":
			l, err := client.TryAcquire(opCtx, w.Key)
			if errors.Is(err, renewlock.ErrNotAcquired) {
				holder := "another process"
				if info, err := client.Inspect(opCtx, w.Key); err == nil {
					holder = info.Holder
				}
				emit("waiting %s", holder)
				l, err = client.Acquire(opCtx, w.Key)
			}
			if err != nil {
				emit("error %v", err)
				break
			}
			lock = l
			emit("acquired %d", l.Token())
			watchers.Add(1)
			go func() {
				defer watchers.Done()
				<-l.Done()
				if err := l.Err(); errors.Is(err, renewlock.ErrLeaseLost) {
					emit("lost %v", err)
				}
			}()
		case "write":
			if lock == nil {
				emit("error write without a lock")
				break
			}
			// Deliberately no check of lock.Err() here: a real worker
			// checks, then may be paused before it writes. The token is
			// what protects the register.
			ok, highest, err := fencedWrite(opCtx, rdb, w.Register, lock.Token(), arg)
			switch {
			case err != nil:
				emit("error %v", err)
			case ok:
				emit("write-ok %d", lock.Token())
			default:
				emit("write-rejected %d %s", lock.Token(), highest)
			}
		case "release":
			if lock == nil {
				emit("error release without a lock")
				break
			}
			if err := lock.Release(opCtx); err != nil {
				emit("release-error %v", err)
			} else {
				emit("released")
			}
			lock = nil
		default:
			emit("error unknown command %q", cmd)
		}
		cancel()
	}
	return nil
}
