package cookbook_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// normalize drops indentation and blank lines, so that a block of the
// cookbook matches the code it quotes however deeply that is indented.
func normalize(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// Every Go and SQL block of docs/cookbook.md is a verbatim excerpt of this
// package, so the cookbook shows code that compiles and is tested.
func TestCookbookQuotesCode(t *testing.T) {
	md, err := os.ReadFile("../cookbook.md")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var sources []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, normalize(string(b)))
	}
	blocks := regexp.MustCompile("(?s)```(go|sql)\n(.*?)```").FindAllStringSubmatch(string(md), -1)
	if len(blocks) < 10 {
		t.Fatalf("only %d Go and SQL blocks in the cookbook", len(blocks))
	}
	for _, b := range blocks {
		block := normalize(b[2])
		found := false
		for _, src := range sources {
			if strings.Contains(src, block) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("this %s block of docs/cookbook.md is not in docs/cookbook/*.go:\n%s", b[1], b[2])
		}
	}
}
