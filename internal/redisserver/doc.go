// Package redisserver runs redis-server processes on free loopback ports,
// without persistence unless configured, and can pause (SIGSTOP), resume,
// kill and restart them on the same port. The test harness
// (internal/redistest), the benchmark program and the CLI demo all start
// their servers through it. A server dies with the process that started it
// where the platform has a parent-death signal (Linux, FreeBSD).
package redisserver
