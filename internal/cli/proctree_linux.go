package cli

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// canShareGroup: the command may stay in renewlock's process group, since
// descendants finds its processes (see proc_unix.go).
const canShareGroup = true

var (
	subreaperOnce sync.Once
	subreaperErr  error
	// subreaper is set once renewlock is a child subreaper: orphans of the
	// command are then re-parented to it.
	subreaper bool
)

// becomeSubreaper makes renewlock the child subreaper of everything the
// command starts (prctl(2) PR_SET_CHILD_SUBREAPER).
func becomeSubreaper() error {
	subreaperOnce.Do(func() {
		subreaperErr = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
		subreaper = subreaperErr == nil
	})
	return subreaperErr
}

// proc is a process found in /proc.
type proc struct {
	pid, ppid, pgrp int
	start           uint64 // start time in clock ticks after boot: with pid, names the process
	state           byte   // R, S, D, T (stopped), Z (zombie), …
}

// readProc reads /proc/PID/stat.
func readProc(pid int) (proc, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return proc{}, false
	}
	// "pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt
	// majflt cmajflt utime stime cutime cstime priority nice num_threads
	// itrealvalue starttime …"; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return proc{}, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 {
		return proc{}, false
	}
	p := proc{pid: pid, state: f[0][0]}
	var e1, e2, e3 error
	p.ppid, e1 = strconv.Atoi(string(f[1]))
	p.pgrp, e2 = strconv.Atoi(string(f[2]))
	p.start, e3 = strconv.ParseUint(string(f[19]), 10, 64)
	return p, e1 == nil && e2 == nil && e3 == nil
}

// allProcs lists the processes in /proc.
func allProcs() []proc {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	out := make([]proc, 0, len(names))
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			out = append(out, p)
		}
	}
	return out
}

// descendants lists the live (not zombie) processes whose parent chain
// leads to renewlock: everything the command started, since renewlock
// starts nothing else and adopts the command's orphans.
func descendants() []proc {
	procs := allProcs()
	children := make(map[int][]int, len(procs))
	byPid := make(map[int]proc, len(procs))
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p.pid)
		byPid[p.pid] = p
	}
	var out []proc
	queue := []int{os.Getpid()}
	for len(queue) > 0 {
		for _, c := range children[queue[0]] {
			queue = append(queue, c)
			if p := byPid[c]; p.state != 'Z' {
				out = append(out, p)
			}
		}
		queue = queue[1:]
	}
	return out
}

// sharesGroup reports whether the command should stay in renewlock's
// process group pgrp on a terminal: renewlock is not its group's leader, or
// writes into a pipe (it is likely part of a shell pipeline, whose other
// members may still be starting), or another process is in the group.
func sharesGroup(pgrp int, stdout, stderr *os.File) bool {
	if pgrp != os.Getpid() || isPipe(stdout) || isPipe(stderr) {
		return true
	}
	self := os.Getpid()
	for _, p := range allProcs() {
		if p.pgrp == pgrp && p.pid != self && p.state != 'Z' {
			return true
		}
	}
	return false
}

// signal sends sig to p, if p is still the process that was found: the pid
// may have been reused since. A pidfd pins the process while its start
// time is checked.
func (p proc) signal(sig syscall.Signal) {
	fd, err := unix.PidfdOpen(p.pid, 0)
	if errors.Is(err, unix.ENOSYS) { // Linux < 5.3
		if q, ok := readProc(p.pid); ok && q.start == p.start {
			_ = syscall.Kill(p.pid, sig)
		}
		return
	}
	if err != nil {
		return // gone
	}
	defer unix.Close(fd)
	if q, ok := readProc(p.pid); ok && q.start == p.start {
		_ = unix.PidfdSendSignal(fd, sig, nil, 0)
	}
}

// isStopped reports whether process pid is stopped.
func isStopped(pid int) bool {
	p, ok := readProc(pid)
	return ok && p.state == 'T'
}
