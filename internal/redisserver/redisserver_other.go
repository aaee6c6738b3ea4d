//go:build !unix

package redisserver

import "errors"

// Config says how to run a server.
type Config struct {
	Binary string
	Dir    string
	Args   []string
	Env    []string
}

// Server is one redis-server process; none can be started here.
type Server struct{}

// Start fails: this package needs a Unix system.
func Start(Config) (*Server, error) {
	return nil, errors.New("redisserver: starting redis-server needs a Unix system")
}

// Addr returns "".
func (*Server) Addr() string { return "" }

// URL returns "".
func (*Server) URL() string { return "" }

// PID returns 0.
func (*Server) PID() int { return 0 }

// Stop does nothing.
func (*Server) Stop() {}
