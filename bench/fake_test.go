package main

// The client side of an S1 pair alone: acquire+release against an in-process
// fake Redis on net.Pipe, so that no system call, no redis-server and no other
// process is involved. What is left is the lock library's code and
// go-redis's; comparing renewlock with raw go-redis calls of the same scripts
// (and the minimal lock with raw SET NX + compare-and-delete) isolates each
// library's own cost:
//
//	cd bench && go test -run '^$' -bench PairFake -benchmem
//
// The fake answers by command name and script SHA with fixed replies (the
// acquire script: taken, a growing token; the release script: released, no
// receiver); it runs nothing.

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

type fakeRedis struct {
	acquireSHA, releaseSHA, minimalSHA string
	token                              atomic.Int64
}

func sha(src string) string {
	h := sha1.Sum([]byte(src))
	return hex.EncodeToString(h[:])
}

// serve answers one connection until it closes.
func (f *fakeRedis) serve(c net.Conn) {
	defer c.Close()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		switch strings.ToUpper(args[0]) {
		case "HELLO":
			w.WriteString("-ERR unknown command 'HELLO'\r\n")
		case "PING":
			w.WriteString("+PONG\r\n")
		case "EVALSHA":
			switch args[1] {
			case f.acquireSHA:
				fmt.Fprintf(w, "*2\r\n:1\r\n:%d\r\n", f.token.Add(1))
			case f.releaseSHA:
				w.WriteString("*2\r\n:1\r\n:0\r\n")
			case f.minimalSHA:
				w.WriteString(":1\r\n")
			default:
				w.WriteString("-NOSCRIPT No matching script.\r\n")
			}
		default: // SET, CLIENT SETINFO, ...
			w.WriteString("+OK\r\n")
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// readCommand reads one RESP array of bulk strings.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[0] != '*' {
		return nil, fmt.Errorf("fake redis: unexpected %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		return nil, err
	}
	args := make([]string, n)
	for i := range args {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimSpace(line[1:]))
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:size])
	}
	return args, nil
}

// fakeClient returns a go-redis client whose connections are net.Pipes
// served by f.
func (f *fakeRedis) client() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: "fake:6379",
		Dialer: func(context.Context, string, string) (net.Conn, error) {
			a, b := net.Pipe()
			go f.serve(b)
			return a, nil
		},
	})
}

func BenchmarkPairFake(b *testing.B) {
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join("..", "scripts", name))
		if err != nil {
			b.Skipf("renewlock's scripts: %v", err)
		}
		return string(data)
	}
	acqSrc, relSrc := read("acquire.lua"), read("release.lua")
	f := &fakeRedis{acquireSHA: sha(acqSrc), releaseSHA: sha(relSrc), minimalSHA: minimalRelease.Hash()}
	acq, rel := redis.NewScript(acqSrc), redis.NewScript(relSrc)
	ctx := context.Background()
	host, _ := os.Hostname()
	holder := fmt.Sprintf("%s:%d", host, os.Getpid())
	const ttl = int64(lockTTL / 1e6)

	run := func(b *testing.B, pair func(key string) error) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if err := pair("k:" + strconv.Itoa(i)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("renewlock", func(b *testing.B) {
		rdb := f.client()
		defer rdb.Close()
		c, err := renewlock.New(rdb, renewlock.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		run(b, func(key string) error {
			l, err := c.Acquire(ctx, key)
			if err != nil {
				return err
			}
			return l.Release(ctx)
		})
	})
	b.Run("raw-scripts", func(b *testing.B) {
		rdb := f.client()
		defer rdb.Close()
		run(b, func(key string) error {
			rkey, owner := "renewlock:"+key, ownerID()
			if err := acq.Run(ctx, rdb, []string{rkey}, owner, ttl, holder).Err(); err != nil {
				return err
			}
			return rel.Run(ctx, rdb, []string{rkey}, owner, ttl, rkey).Err()
		})
	})
	b.Run("minimal", func(b *testing.B) {
		rdb := f.client()
		defer rdb.Close()
		m := &minimalInst{rdb}
		run(b, func(key string) error {
			h, err := m.acquire(ctx, key)
			if err != nil {
				return err
			}
			return h.release(ctx)
		})
	})
	b.Run("raw-setnx-cad", func(b *testing.B) {
		rdb := f.client()
		defer rdb.Close()
		run(b, func(key string) error {
			k, owner := "minimal:"+key, ownerID()
			if err := rdb.SetNX(ctx, k, owner, lockTTL).Err(); err != nil {
				return err
			}
			return minimalRelease.Run(ctx, rdb, []string{k}, owner).Err()
		})
	})
	b.Run("raw-2-pings", func(b *testing.B) {
		rdb := f.client()
		defer rdb.Close()
		run(b, func(string) error {
			if err := rdb.Ping(ctx).Err(); err != nil {
				return err
			}
			return rdb.Ping(ctx).Err()
		})
	})
}
