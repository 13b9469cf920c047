package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on
// every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// cpuTime returns the CPU time (user and system) process pid has used so
// far, pid 0 meaning this process; ok is false where /proc cannot tell.
func cpuTime(pid int) (d time.Duration, ok bool) {
	path := "/proc/self/stat"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	// The command name may hold spaces and parentheses: the fields that
	// count start after the last ')'. utime and stime are fields 14 and
	// 15 of proc(5), the 12th and 13th after the name.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * clockTick, true
}

// cpuProbe measures the CPU a level costs: the server processes' (the
// cluster's three nodes) and this process's (the senders'), so that a
// level's efficiency can be compared across runs on a machine whose
// throughput swings with what else runs on it.
type cpuProbe struct {
	pids         []int
	server, self time.Duration
	ok           bool
}

// startCPUProbe samples the CPU time of pids and of this process.
func startCPUProbe(pids []int) *cpuProbe {
	p := &cpuProbe{pids: pids}
	p.server, p.self, p.ok = p.sample()
	return p
}

func (p *cpuProbe) sample() (server, self time.Duration, ok bool) {
	if len(p.pids) == 0 {
		return 0, 0, false
	}
	for _, pid := range p.pids {
		d, ok := cpuTime(pid)
		if !ok {
			return 0, 0, false
		}
		server += d
	}
	self, ok = cpuTime(0)
	return server, self, ok
}

// stop records in row the CPU per accepted operation since the probe
// started (nothing when /proc could not tell or nothing was accepted).
func (p *cpuProbe) stop(row *benchRow) {
	server, self, ok := p.sample()
	if !ok || !p.ok || row.Ops == 0 {
		return
	}
	row.ServerCPUPerOp = (server - p.server) / time.Duration(row.Ops)
	row.SendersCPUPerOp = (self - p.self) / time.Duration(row.Ops)
}
