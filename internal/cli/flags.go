package cli

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Duration is a flag value for a non-negative duration. It accepts Go
// durations ("1m30s", "500ms") and, like flock -w, a bare number of seconds
// ("10", "2.5"). Given records that the flag was set.
type Duration struct {
	D     time.Duration
	Given bool
}

// ParseDuration parses a flag value as Duration.Set does.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty duration; want e.g. 10s, 500ms or 2m")
	}
	var d time.Duration
	if isNumber(t) {
		secs, err := strconv.ParseFloat(t, 64)
		if err != nil || math.IsNaN(secs) || math.IsInf(secs, 0) {
			return 0, fmt.Errorf("bad duration %q; want e.g. 10s, 500ms or 2m", s)
		}
		if secs < 0 {
			return 0, fmt.Errorf("negative duration %q", s)
		}
		if secs*float64(time.Second) >= math.MaxInt64 {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		d = time.Duration(secs * float64(time.Second))
	} else {
		var err error
		if d, err = time.ParseDuration(t); err != nil {
			return 0, fmt.Errorf("bad duration %q; want e.g. 10s, 500ms or 2m", s)
		}
		if d < 0 {
			return 0, fmt.Errorf("negative duration %q", s)
		}
	}
	return d, nil
}

// isNumber reports whether s looks like a plain decimal number (a duration
// in seconds) rather than a Go duration with units.
func isNumber(s string) bool {
	for _, r := range s {
		if !unicode.IsDigit(r) && r != '.' && r != '-' && r != '+' {
			return false
		}
	}
	return true
}

// String returns the duration in Go syntax, or "" for an unset flag with
// no default (so --help does not show a misleading "default 0s").
func (d *Duration) String() string {
	if !d.Given && d.D == 0 {
		return ""
	}
	return d.D.String()
}

// Set parses s; it implements pflag.Value.
func (d *Duration) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	d.D, d.Given = v, true
	return nil
}

// Type names the value in --help; it implements pflag.Value.
func (d *Duration) Type() string { return "duration" }

// strquote quotes s in Go syntax.
func strquote(s string) string { return strconv.Quote(s) }

// displayKey returns key as is if it prints cleanly, else quoted.
func displayKey(key string) string {
	if !utf8.ValidString(key) {
		return strconv.Quote(key)
	}
	for _, r := range key {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '"' {
			return strconv.Quote(key)
		}
	}
	if key == "" {
		return `""`
	}
	return key
}
