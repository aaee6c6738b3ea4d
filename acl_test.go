package renewlock_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
	"github.com/renewlock/renewlock/internal/redistest"
)

// readmeACL returns the ACL SETUSER lines of the README's "Least privilege"
// section, by user name, as argument lists with the password set to pw.
func readmeACL(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "## Least privilege")
	if start < 0 {
		t.Fatal(`README.md has no "## Least privilege" section`)
	}
	section := text[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	users := map[string][]string{}
	for _, line := range regexp.MustCompile(`(?m)^ACL SETUSER .*$`).FindAllString(section, -1) {
		args := strings.Fields(line)
		for i, a := range args {
			if a == ">PASSWORD" {
				args[i] = ">pw"
			}
		}
		users[args[2]] = args
	}
	for _, u := range []string{"locker", "lockviewer", "lockops"} {
		if users[u] == nil {
			t.Fatalf("README's Least privilege section has no ACL line for %s", u)
		}
	}
	return users
}

// setUser applies an ACL SETUSER line (as args), leaving out the rule drop.
func setUser(t *testing.T, admin *redis.Client, args []string, drop string) {
	t.Helper()
	var cmd []any
	for _, a := range args {
		if a != drop {
			cmd = append(cmd, a)
		}
	}
	if err := admin.Do(context.Background(), cmd...).Err(); err != nil {
		t.Fatalf("%v: %v", cmd, err)
	}
}

// rights returns the +command rules of an ACL line.
func rights(args []string) []string {
	var out []string
	for _, a := range args {
		if strings.HasPrefix(a, "+") {
			out = append(out, a)
		}
	}
	return out
}

// aclDenials returns the ACL LOG entries since the last reset, and resets it.
func aclDenials(t *testing.T, admin *redis.Client) []string {
	t.Helper()
	ctx := context.Background()
	entries, err := admin.Do(ctx, "ACL", "LOG").Slice()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, fmt.Sprint(e))
	}
	if err := admin.Do(ctx, "ACL", "LOG", "RESET").Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// lockWork does everything a lock user does: ping, take a free lock, wait
// for a held one (queue, subscription), renew while held and while waiting,
// get it granted by another client's release, release it free, and leave a
// queue. It starts from an empty script cache, so EVAL is needed too.
func lockWork(ctx context.Context, admin, a, b *redis.Client) error {
	if err := admin.ScriptFlush(ctx).Err(); err != nil {
		return err
	}
	if err := a.Ping(ctx).Err(); err != nil {
		return err
	}
	opts := []renewlock.Option{quiet, renewlock.WithTTL(300 * time.Millisecond)}
	ca, err := renewlock.New(a, opts...)
	if err != nil {
		return err
	}
	defer ca.Close()
	cb, err := renewlock.New(b, opts...)
	if err != nil {
		return err
	}
	defer cb.Close()
	key := fmt.Sprintf("acl/%d", time.Now().UnixNano())
	l1, err := ca.Acquire(ctx, key)
	if err != nil {
		return fmt.Errorf("take: %w", err)
	}
	type res struct {
		l   *renewlock.Lock
		err error
	}
	got := make(chan res, 1)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	go func() {
		l, err := cb.Acquire(wctx, key)
		got <- res{l, err}
	}()
	time.Sleep(250 * time.Millisecond) // both leases renew meanwhile
	// A second waiter gives up: it leaves the queue.
	gctx, gcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, gerr := cb.Acquire(gctx, key)
	gcancel()
	if !errors.Is(gerr, context.DeadlineExceeded) {
		return fmt.Errorf("waiter that gives up: %w", gerr)
	}
	if err := l1.Release(ctx); err != nil {
		return fmt.Errorf("release to a waiter: %w", err)
	}
	r := <-got
	if r.err != nil {
		return fmt.Errorf("wait: %w", r.err)
	}
	if err := r.l.Release(ctx); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	if err := l1.Err(); !errors.Is(err, renewlock.ErrReleased) {
		return fmt.Errorf("first lock: %w", err)
	}
	// The other kinds: a semaphore, a read-write lock (a writer waits for a
	// reader), an election watched by an observer.
	p, err := ca.AcquirePermit(ctx, key+"/sem", 2)
	if err != nil {
		return fmt.Errorf("permit: %w", err)
	}
	if err := p.Release(ctx); err != nil {
		return fmt.Errorf("permit release: %w", err)
	}
	rd, err := ca.AcquireRead(ctx, key+"/rw")
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	wch := make(chan res, 1)
	go func() {
		w, err := cb.AcquireWrite(wctx, key+"/rw")
		wch <- res{w, err}
	}()
	time.Sleep(150 * time.Millisecond)
	if err := rd.Release(ctx); err != nil {
		return fmt.Errorf("read release: %w", err)
	}
	w := <-wch
	if w.err != nil {
		return fmt.Errorf("write: %w", w.err)
	}
	if err := w.l.Release(ctx); err != nil {
		return fmt.Errorf("write release: %w", err)
	}
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	changes := cb.Observe(octx, key+"/el")
	<-changes // none yet
	lead, err := ca.Campaign(ctx, key+"/el", "me")
	if err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	select {
	case ld := <-changes:
		if ld.Term != lead.Term() {
			return fmt.Errorf("observed %+v", ld)
		}
	case <-time.After(2 * time.Second):
		return errors.New("the observer did not see the new leader")
	}
	if _, err := cb.Leader(ctx, key+"/el"); err != nil {
		return fmt.Errorf("leader: %w", err)
	}
	if err := lead.Resign(ctx); err != nil {
		return fmt.Errorf("resign: %w", err)
	}
	ocancel() // the observer unsubscribes
	return subscribers(ctx, admin, "renewlock:leader:"+key+"/el", false)
}

// viewWork does what status, list, watch, exporter and leader --watch
// do: held is a held mutex, sem a semaphore with a holder, el an election
// with a leader.
func viewWork(ctx context.Context, admin, v *redis.Client, held, sem, el string) error {
	if err := admin.ScriptFlush(ctx).Err(); err != nil {
		return err
	}
	if err := v.Ping(ctx).Err(); err != nil {
		return err
	}
	c, err := renewlock.New(v, quiet)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Inspect(ctx, held); err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	if infos, err := c.List(ctx, ""); err != nil || len(infos) != 3 {
		return fmt.Errorf("list: %v, %w", infos, err)
	}
	if info, err := c.Inspect(ctx, sem); err != nil || len(info.Holders) != 1 {
		return fmt.Errorf("inspect a semaphore: %+v, %w", info, err)
	}
	if _, err := c.Leader(ctx, el); err != nil {
		return fmt.Errorf("leader: %w", err)
	}
	// Observe reads at once, and again once its subscription is confirmed:
	// without the rights to subscribe, it still answers (by reading), so
	// check the subscription itself.
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes := c.Observe(octx, el)
	if ld := <-changes; ld.Value != "v" {
		return fmt.Errorf("observe: %+v", ld)
	}
	if err := subscribers(ctx, admin, "renewlock:leader:"+el, true); err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	cancel() // Observe ends: its channel is unsubscribed
	if err := subscribers(ctx, admin, "renewlock:leader:"+el, false); err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	return nil
}

// subscribers waits up to 2 s until channel has a subscriber (some) or
// none (!some).
func subscribers(ctx context.Context, admin *redis.Client, channel string, some bool) error {
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if n := admin.PubSubNumSub(ctx, channel).Val()[channel]; (n > 0) == some {
			return nil
		}
	}
	if some {
		return fmt.Errorf("never subscribed to %s", channel)
	}
	return fmt.Errorf("still subscribed to %s", channel)
}

// The README's ACLs are exactly what each kind of user needs: every
// operation works with no denial logged, and without any one right
// something fails.
func TestLeastPrivilegeACL(t *testing.T) {
	users := readmeACL(t)
	srv := redistest.Start(t)
	admin := srv.Client()
	ctx := ctxT(t, 2*time.Minute)
	login := func(user string) *redis.Client {
		return srv.Client(func(o *redis.Options) { o.Username, o.Password, o.MaxRetries = user, "pw", -1 })
	}

	t.Run("locker", func(t *testing.T) {
		setUser(t, admin, users["locker"], "")
		aclDenials(t, admin)
		if err := lockWork(ctx, admin, login("locker"), login("locker")); err != nil {
			t.Fatalf("with the README's rights: %v", err)
		}
		if d := aclDenials(t, admin); len(d) > 0 {
			t.Fatalf("denials with the README's rights: %v", d)
		}
		for _, r := range rights(users["locker"]) {
			setUser(t, admin, users["locker"], r)
			err := lockWork(ctx, admin, login("locker"), login("locker"))
			d := aclDenials(t, admin)
			if err == nil && len(d) == 0 {
				t.Errorf("without %s everything still works: the README asks for a right that is not needed", r)
			} else if err != nil && len(d) == 0 && !errors.Is(err, renewlock.ErrPermission) && !strings.Contains(err.Error(), "NOPERM") {
				t.Errorf("without %s: %v, want an error wrapping ErrPermission", r, err)
			}
			_ = admin.Do(ctx, "ACL", "DELUSER", "locker").Err()
			setUser(t, admin, users["locker"], "")
		}
	})

	t.Run("viewer and operator", func(t *testing.T) {
		setUser(t, admin, users["locker"], "")
		holder := newClient(t, login("locker"))
		held, sem, el := "acl/held", "acl/sem", "acl/el"
		l, err := holder.Acquire(ctx, held)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release(ctx)
		p, err := holder.AcquirePermit(ctx, sem, 3)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Release(ctx)
		lead, err := holder.Campaign(ctx, el, "v")
		if err != nil {
			t.Fatal(err)
		}
		defer lead.Resign(ctx)
		for _, u := range []string{"lockviewer", "lockops"} {
			setUser(t, admin, users[u], "")
		}
		aclDenials(t, admin)
		if err := viewWork(ctx, admin, login("lockviewer"), held, sem, el); err != nil {
			t.Fatalf("lockviewer: %v", err)
		}
		if d := aclDenials(t, admin); len(d) > 0 {
			t.Fatalf("lockviewer: denials with the README's rights: %v", d)
		}
		for _, r := range rights(users["lockviewer"]) {
			_ = admin.Do(ctx, "ACL", "DELUSER", "lockviewer").Err()
			setUser(t, admin, users["lockviewer"], r)
			err := viewWork(ctx, admin, login("lockviewer"), held, sem, el)
			if d := aclDenials(t, admin); err == nil && len(d) == 0 {
				t.Errorf("lockviewer: without %s everything still works", r)
			}
		}
		// The operator can also force a release, and do all a locker does.
		ops := newClient(t, login("lockops"))
		if err := viewWork(ctx, admin, login("lockops"), held, sem, el); err != nil {
			t.Fatalf("lockops: %v", err)
		}
		if _, err := ops.ForceRelease(ctx, held); err != nil {
			t.Fatalf("lockops: force release: %v", err)
		}
		if err := lockWork(ctx, admin, login("lockops"), login("lockops")); err != nil {
			t.Fatalf("lockops: %v", err)
		}
		if d := aclDenials(t, admin); len(d) > 0 {
			t.Fatalf("lockops: denials with the README's rights: %v", d)
		}
		// A viewer cannot force a release, and is told it is a permission problem.
		if _, err := holder.Acquire(ctx, held); err != nil {
			t.Fatal(err)
		}
		viewer := newClient(t, login("lockviewer"))
		if _, err := viewer.ForceRelease(ctx, held); !errors.Is(err, renewlock.ErrPermission) {
			t.Fatalf("lockviewer: force release = %v, want ErrPermission", err)
		}
		aclDenials(t, admin)
	})
}
