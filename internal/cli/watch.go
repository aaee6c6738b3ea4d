package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"golang.org/x/term"

	"github.com/renewlock/renewlock"
)

// Defaults and bounds of `renewlock watch`.
const (
	DefaultWatchInterval = time.Second
	MinWatchInterval     = 100 * time.Millisecond
)

// WatchSorts are the orders of the watch view, in the order the s key
// cycles through them.
var WatchSorts = []string{"age", "key", "ttl", "waiters"}

// WatchConfig is one `renewlock watch` invocation.
type WatchConfig struct {
	Redis    RedisTarget
	Prefix   string
	Pattern  string        // glob of the keys shown; "" all
	Interval time.Duration // between refreshes
	Sort     string        // one of WatchSorts; "" age
	Once     bool          // one snapshot, then exit
	JSON     bool          // one JSON object per line per held lock per refresh
	Timeout  time.Duration // bounds one refresh; 0: DefaultOpTimeout

	Stdin  *os.File
	Stdout *os.File
	Stderr io.Writer
}

// Validate checks the flags.
func (w *WatchConfig) Validate() error {
	if w.Interval < MinWatchInterval {
		return Usagef("--interval %v is below the minimum %v", w.Interval, MinWatchInterval)
	}
	if w.Sort == "" {
		w.Sort = WatchSorts[0]
	}
	if !slices.Contains(WatchSorts, w.Sort) {
		return Usagef("--sort %s: want one of %s", strquote(w.Sort), strings.Join(WatchSorts, ", "))
	}
	if !w.Once && !w.JSON && !term.IsTerminal(int(w.Stdout.Fd())) {
		return Usagef("watch: stdout is not a terminal; use --once for one snapshot or --json for a stream of JSON lines")
	}
	return nil
}

// WatchJSON is one line of `watch --json`: a held lock at one refresh.
type WatchJSON struct {
	Time       time.Time `json:"time"`    // when it was read, by the Redis server's clock
	Refresh    int       `json:"refresh"` // the refresh's number, from 1
	Key        string    `json:"key"`
	Holder     string    `json:"holder"`
	Host       string    `json:"host,omitempty"`
	PID        int       `json:"pid,omitempty"`
	Owner      string    `json:"owner"`
	Token      uint64    `json:"token"`
	TTLMillis  int64     `json:"ttl_ms"`
	AgeMillis  int64     `json:"age_ms"`
	Waiters    int       `json:"waiters"`
	AcquiredAt time.Time `json:"acquired_at"`
}

// snapshot is one refresh: the held locks and the Redis server's time.
type snapshot struct {
	n     int // refresh number, from 1
	at    time.Time
	local time.Time // when it was taken, by the local clock
	locks []renewlock.Info
	err   error
}

func (s *snapshot) age(in *renewlock.Info) time.Duration {
	if in.AcquiredAt.IsZero() {
		return 0
	}
	return max(s.at.Sub(in.AcquiredAt), 0)
}

// watcher holds the connection and state of a watch.
type watcher struct {
	cfg    *WatchConfig
	rdb    redis.UniversalClient
	client *renewlock.Client
	n      int
}

// Watch shows the held locks matching cfg.Pattern: as a live view on the
// terminal, once (--once), or as JSON lines (--json).
func Watch(ctx context.Context, cfg *WatchConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	rdb, client, closeAll, err := openOperator(cfg.Redis, cfg.Prefix)
	if err != nil {
		return err
	}
	defer closeAll()
	if err := ping(ctx, rdb, cfg.Redis); err != nil {
		return err
	}
	w := &watcher{cfg: cfg, rdb: rdb, client: client}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	switch {
	case cfg.Once:
		s := w.refresh(ctx)
		if s.err != nil {
			return redisFailure("watch", cfg.Redis, s.err)
		}
		if cfg.JSON {
			return w.printJSON(&s)
		}
		return w.printTable(&s)
	case cfg.JSON:
		return w.stream(ctx)
	}
	return w.interactive(ctx)
}

// refresh reads the held locks and the server's clock.
func (w *watcher) refresh(ctx context.Context) snapshot {
	timeout := w.cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultOpTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w.n++
	s := snapshot{n: w.n, local: time.Now()}
	s.locks, s.err = w.client.List(ctx, w.cfg.Pattern)
	if s.err != nil {
		return s
	}
	// Ages by the server's clock, which stamped the acquisitions; the
	// local clock if TIME is refused.
	if t, err := w.rdb.Time(ctx).Result(); err == nil {
		s.at = t
	} else {
		s.at = time.Now()
	}
	sortLocks(s.locks, w.cfg.Sort, &s)
	return s
}

// sortLocks orders the locks for the view: longest held first (age), by
// key, least lease left first (ttl), or most waiters first; ties by key.
func sortLocks(locks []renewlock.Info, by string, s *snapshot) {
	slices.SortStableFunc(locks, func(a, b renewlock.Info) int {
		var c int
		switch by {
		case "age":
			c = -compareDur(s.age(&a), s.age(&b))
		case "ttl":
			c = compareDur(a.TTL, b.TTL)
		case "waiters":
			c = b.Waiters - a.Waiters
		}
		if c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
}

func compareDur(a, b time.Duration) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// printJSON writes one line per held lock.
func (w *watcher) printJSON(s *snapshot) error {
	var b []byte
	for i := range s.locks {
		in := &s.locks[i]
		j := WatchJSON{Time: s.at.UTC(), Refresh: s.n, Key: in.Key, Holder: in.Holder, Owner: ownerPrefix(in.Owner), Token: in.Token,
			TTLMillis: in.TTL.Milliseconds(), AgeMillis: s.age(in).Milliseconds(), Waiters: in.Waiters, AcquiredAt: in.AcquiredAt.UTC()}
		if host, pid, ok := SplitHolder(in.Holder); ok {
			j.Host, j.PID = host, pid
		}
		line, err := json.Marshal(j)
		if err != nil {
			return exitf(ExitSoftware, "writing JSON: %v", err)
		}
		b = append(append(b, line...), '\n')
	}
	if _, err := w.cfg.Stdout.Write(b); err != nil {
		return exitf(ExitSoftware, "writing JSON: %v", err)
	}
	return nil
}

// stream prints JSON lines every interval until ctx ends. Redis being
// unavailable is a warning on stderr, and the stream goes on; a problem
// that retrying cannot fix (permission, rejection) ends it.
func (w *watcher) stream(ctx context.Context) error {
	tick := time.NewTicker(w.cfg.Interval)
	defer tick.Stop()
	for {
		s := w.refresh(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if s.err != nil {
			err := redisFailure("watch", w.cfg.Redis, s.err)
			if Code(err) != ExitUnavailable {
				return err
			}
			fmt.Fprintf(w.cfg.Stderr, "renewlock: warning: %s; retrying every %v\n", err, w.cfg.Interval)
		} else if err := w.printJSON(&s); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// printTable writes one snapshot as a table (--once).
func (w *watcher) printTable(s *snapshot) error {
	var out strings.Builder
	if len(s.locks) == 0 {
		if w.cfg.Pattern == "" {
			out.WriteString("no locks held\n")
		} else {
			fmt.Fprintf(&out, "no locks held matching %s\n", strquote(w.cfg.Pattern))
		}
	} else {
		for _, l := range tableLines(s) {
			out.WriteString(strings.TrimRight(l, " ") + "\n")
		}
	}
	if _, err := io.WriteString(w.cfg.Stdout, out.String()); err != nil {
		return exitf(ExitSoftware, "writing: %v", err)
	}
	return nil
}

// tableLines formats the locks as aligned columns, header first.
func tableLines(s *snapshot) []string {
	rows := [][]string{{"KEY", "HOLDER", "TOKEN", "AGE", "TTL", "WAITERS"}}
	for i := range s.locks {
		in := &s.locks[i]
		rows = append(rows, []string{displayKey(in.Key), displayKey(in.Holder), fmt.Sprint(in.Token),
			shortDur(s.age(in)), shortDur(in.TTL), fmt.Sprint(in.Waiters)})
	}
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	lines := make([]string, len(rows))
	for n, r := range rows {
		var b strings.Builder
		for i, c := range r {
			pad := widths[i] - utf8.RuneCountInString(c)
			if i >= 3 { // durations and counts align right
				b.WriteString(strings.Repeat(" ", pad) + c)
			} else {
				b.WriteString(c + strings.Repeat(" ", pad))
			}
			if i < len(r)-1 {
				b.WriteString("  ")
			}
		}
		lines[n] = b.String()
	}
	return lines
}

// shortDur formats a duration compactly: 850ms, 9.2s, 3m07s, 1h02m, 2d03h.
func shortDur(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// Terminal control sequences of the live view.
const (
	altScreenOn  = "\x1b[?1049h"
	altScreenOff = "\x1b[?1049l"
	cursorHide   = "\x1b[?25l"
	cursorShow   = "\x1b[?25h"
	cursorHome   = "\x1b[H"
	clearEOL     = "\x1b[K"
	clearEOS     = "\x1b[J"
	bold         = "\x1b[1m"
	reverse      = "\x1b[7m"
	plain        = "\x1b[m"
)

// interactive runs the live view until q, Ctrl-C or a signal.
func (w *watcher) interactive(ctx context.Context) (err error) {
	out := w.cfg.Stdout
	var restoreIn func()
	if w.cfg.Stdin != nil && term.IsTerminal(int(w.cfg.Stdin.Fd())) {
		state, err := term.MakeRaw(int(w.cfg.Stdin.Fd()))
		if err != nil {
			return exitf(ExitSoftware, "watch: cannot set up the terminal: %v", err)
		}
		restoreIn = func() { _ = term.Restore(int(w.cfg.Stdin.Fd()), state) }
	}
	_, _ = io.WriteString(out, altScreenOn+cursorHide)
	defer func() {
		_, _ = io.WriteString(out, plain+cursorShow+altScreenOff)
		if restoreIn != nil {
			restoreIn()
		}
	}()

	keys := make(chan byte, 16)
	if restoreIn != nil {
		stopKeys := readKeys(w.cfg.Stdin, keys)
		defer stopKeys()
	}
	resize := make(chan os.Signal, 1)
	if sigs := resizeSignals(); len(sigs) > 0 {
		signal.Notify(resize, sigs...)
		defer signal.Stop(resize)
	}

	// One refresh at a time runs in the background, so that keys and
	// resizes are handled while Redis is slow.
	results := make(chan snapshot, 1)
	rctx, cancel := context.WithCancel(ctx)
	inFlight := false
	startRefresh := func() {
		if !inFlight {
			inFlight = true
			go func() { results <- w.refresh(rctx) }()
		}
	}
	defer func() {
		cancel()
		if inFlight {
			<-results
		}
	}()

	v := &view{cfg: w.cfg}
	draw := func() error {
		width, height, err := term.GetSize(int(out.Fd()))
		if err != nil || width <= 0 || height <= 0 {
			width, height = 80, 24
		}
		if _, err := io.WriteString(out, v.render(width, height, time.Now())); err != nil {
			return exitf(ExitSoftware, "watch: writing to the terminal: %v", err)
		}
		return nil
	}
	tick := time.NewTicker(w.cfg.Interval)
	defer tick.Stop()
	startRefresh()
	if err := draw(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-results:
			inFlight = false
			v.update(s, w.cfg.Redis)
		case <-tick.C:
			startRefresh()
			continue // drawn when the result arrives
		case <-resize:
		case k := <-keys:
			switch k {
			case 'q', 'Q', 3, 4: // q, Ctrl-C, Ctrl-D
				return nil
			case 's', 'S':
				i := slices.Index(WatchSorts, w.cfg.Sort)
				w.cfg.Sort = WatchSorts[(i+1)%len(WatchSorts)]
				if v.last != nil {
					sortLocks(v.last.locks, w.cfg.Sort, v.last)
				}
			case 'r', 'R', ' ':
				startRefresh()
			case 12: // Ctrl-L: redraw
				_, _ = io.WriteString(out, cursorHome+clearEOS)
			default:
				continue
			}
		}
		if err := draw(); err != nil {
			return err
		}
	}
}

// view is what the live view shows: the last good snapshot and the last
// error, if the latest refresh failed.
type view struct {
	cfg    *WatchConfig
	last   *snapshot
	errMsg string
	errAt  time.Time
}

func (v *view) update(s snapshot, target RedisTarget) {
	if s.err != nil {
		if errors.Is(s.err, context.Canceled) {
			return
		}
		v.errMsg, v.errAt = redisFailure("refresh", target, s.err).Error(), s.local
		return
	}
	v.last, v.errMsg = &s, ""
}

// render draws the whole screen for a terminal of width × height.
func (v *view) render(width, height int, now time.Time) string {
	var lines []string
	pattern := v.cfg.Pattern
	if pattern == "" {
		pattern = "*"
	}
	clock := now.Format("15:04:05")
	title := fmt.Sprintf("renewlock watch  %s  %s  every %v  sorted by %s", v.cfg.Redis.Redacted(), strquote(pattern), v.cfg.Interval, v.cfg.Sort)
	if pad := width - utf8.RuneCountInString(title) - len(clock); pad >= 2 {
		title += strings.Repeat(" ", pad) + clock
	}
	lines = append(lines, bold+fit(title, width)+plain)

	var status string
	switch {
	case v.errMsg != "":
		since := "no data yet"
		if v.last != nil {
			since = "showing the locks as of " + v.last.local.Format("15:04:05")
		}
		status = fmt.Sprintf("%s — retrying every %v; %s", strings.TrimPrefix(v.errMsg, "refresh: "), v.cfg.Interval, since)
	case v.last == nil:
		status = "reading the locks…"
	default:
		status = summary(v.last)
	}
	lines = append(lines, fit(status, width), "")

	footer := reverse + fit(" q quit  s sort ("+strings.Join(WatchSorts, "/")+")  r refresh", width) + plain
	room := height - len(lines) - 1 // the footer
	if v.last != nil && len(v.last.locks) > 0 && room > 0 {
		table := tableLines(v.last)
		head, rows := table[0], table[1:]
		lines = append(lines, bold+fit(head, width)+plain)
		room--
		if len(rows) > room {
			keep := max(room-1, 0)
			more := fmt.Sprintf("… and %d more (a taller terminal or a narrower PATTERN shows them)", len(rows)-keep)
			rows = append(rows[:keep:keep], more)
			if room == 0 {
				rows = nil
			}
		}
		for _, r := range rows {
			lines = append(lines, fit(r, width))
		}
	}
	if len(lines) > height-1 {
		lines = lines[:max(height-1, 0)]
	}
	var b strings.Builder
	b.WriteString(cursorHome)
	for _, l := range lines {
		b.WriteString(l + clearEOL + "\r\n")
	}
	b.WriteString(clearEOS)
	// The footer on the last row, without a newline that would scroll.
	fmt.Fprintf(&b, "\x1b[%d;1H%s%s", height, footer, clearEOL)
	return b.String()
}

// summary is the status line of a good snapshot.
func summary(s *snapshot) string {
	waiting := 0
	var oldest *renewlock.Info
	for i := range s.locks {
		in := &s.locks[i]
		waiting += in.Waiters
		if oldest == nil || s.age(in) > s.age(oldest) {
			oldest = in
		}
	}
	msg := fmt.Sprintf("%d held, %d waiting", len(s.locks), waiting)
	if oldest != nil {
		msg += fmt.Sprintf("; oldest %s held for %s", displayKey(oldest.Key), shortDur(s.age(oldest)))
	}
	return msg + fmt.Sprintf("  (read at %s)", s.local.Format("15:04:05.000"))
}

// fit cuts s to width runes, ending in … when cut.
func fit(s string, width int) string {
	if width <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}
