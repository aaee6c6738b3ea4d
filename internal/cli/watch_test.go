package cli

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/renewlock/renewlock"
)

func testSnapshot() *snapshot {
	at := time.Date(2025, 6, 1, 2, 0, 0, 0, time.UTC)
	return &snapshot{n: 1, at: at, local: at, locks: []renewlock.Info{
		{Key: "b", Holder: "h:2", Token: 20, AcquiredAt: at.Add(-3 * time.Hour), TTL: 9 * time.Second, Waiters: 0},
		{Key: "a", Holder: "h:1", Token: 10, AcquiredAt: at.Add(-2 * time.Second), TTL: 1500 * time.Millisecond, Waiters: 4},
		{Key: "c", Holder: "h:3", Token: 30, AcquiredAt: at.Add(-2 * time.Second), TTL: 5 * time.Second, Waiters: 1},
	}}
}

func TestSortLocks(t *testing.T) {
	for by, want := range map[string]string{"age": "bac", "key": "abc", "ttl": "acb", "waiters": "acb"} {
		s := testSnapshot()
		sortLocks(s.locks, by, s)
		var got string
		for _, in := range s.locks {
			got += in.Key
		}
		if got != want {
			t.Errorf("sorted by %s: %s, want %s", by, got, want)
		}
	}
}

func TestShortDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 850 * time.Millisecond: "850ms", 9200 * time.Millisecond: "9.2s",
		187 * time.Second: "3m07s", 62 * time.Minute: "1h02m", 51 * time.Hour: "2d03h",
	} {
		if got := shortDur(d); got != want {
			t.Errorf("shortDur(%v) = %q, want %q", d, got, want)
		}
	}
}

// The live view fits any terminal: no line wider than it, no more lines
// than it has rows, the footer on the last row; what does not fit is
// counted.
func TestViewRender(t *testing.T) {
	v := &view{cfg: &WatchConfig{Redis: RedisTarget{URL: "redis://u:pw@h:1"}, Interval: time.Second, Sort: "age"}}
	s := testSnapshot()
	sortLocks(s.locks, "age", s)
	v.update(*s, v.cfg.Redis)
	for _, size := range [][2]int{{120, 30}, {40, 8}, {70, 7}, {20, 5}, {10, 2}, {1, 1}} {
		w, h := size[0], size[1]
		out := v.render(w, h, s.local)
		if strings.Contains(out, "pw@") {
			t.Fatalf("the view shows the password: %q", out)
		}
		// Strip the control sequences and lay the text out as the terminal does.
		rows := screenRows(out, h)
		for i, r := range rows {
			if n := len([]rune(r)); n > w {
				t.Fatalf("%dx%d: row %d has %d characters: %q", w, h, i, n, r)
			}
		}
		if h >= 2 && !strings.Contains(rows[h-1], "q") {
			t.Fatalf("%dx%d: no footer on the last row: %q", w, h, rows)
		}
		if w == 120 && (!strings.Contains(rows[0], "redis://u:xxxxx@h:1") || !strings.Contains(rows[1], "3 held, 5 waiting; oldest b held for 3h00m") || !strings.HasPrefix(rows[3], "KEY") || !strings.HasPrefix(rows[4], "b ")) {
			t.Fatalf("120x30 view:\n%s", strings.Join(rows, "\n"))
		}
		if w == 70 && !strings.Contains(strings.Join(rows, "\n"), "… and 2 more") {
			t.Fatalf("70x7 view does not count the locks it leaves out:\n%s", strings.Join(rows, "\n"))
		}
	}
	// A failed refresh keeps the last locks and says why.
	v.update(snapshot{err: errors.New("dial tcp: connection refused"), local: s.local}, v.cfg.Redis)
	rows := screenRows(v.render(200, 30, s.local), 30)
	if !strings.Contains(rows[1], "unavailable: dial tcp: connection refused") || !strings.Contains(rows[1], "showing the locks as of") || !strings.HasPrefix(rows[4], "b ") {
		t.Fatalf("view after an error:\n%s", strings.Join(rows, "\n"))
	}
}

// screenRows interprets the few sequences render uses: home, CR LF, erase,
// colours, and moving to the start of a row.
func screenRows(out string, height int) []string {
	raw := make([][]byte, height)
	r := 0
	for i := 0; i < len(out); {
		switch {
		case strings.HasPrefix(out[i:], "\x1b["):
			j := i + 2
			for j < len(out) && (out[j] < 0x40 || out[j] > 0x7e) {
				j++
			}
			seq := out[i+2 : j]
			switch out[j] {
			case 'H':
				r = 0
				if row, _, ok := strings.Cut(seq, ";"); ok {
					var n int
					for _, c := range row {
						n = n*10 + int(c-'0')
					}
					r = n - 1
				}
			}
			i = j + 1
		case out[i] == '\r':
			i++
		case out[i] == '\n':
			r++
			i++
		default:
			if r >= 0 && r < height {
				raw[r] = append(raw[r], out[i])
			}
			i++
		}
	}
	rows := make([]string, height)
	for i, b := range raw {
		rows[i] = string(b)
	}
	return rows
}
