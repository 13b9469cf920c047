// Package freeport hands out loopback (or namespace) ports for servers that
// tests and local benchmarks start, stop and start again on the same
// address.
//
// Ports are drawn below Linux's default ephemeral range (32768-60999).
// A port taken with ":0" lies inside that range, and once its server stops,
// any outgoing connection of the machine may take it as a source port; the
// restart then fails with "address already in use". Below the range only
// another explicit bind can take it.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

// The range ports are drawn from: below the ephemeral range.
const (
	// Min is the lowest port handed out.
	Min = 20000
	// Max is one above the highest port handed out.
	Max = 32000
)

// registry remembers what this process handed out, so that two callers
// never get the same port even when the first has not bound it yet. It is
// process-wide on purpose: every test and benchmark of one process shares
// the machine's ports.
var registry = struct {
	sync.Mutex
	handedOut map[string]bool
}{handedOut: map[string]bool{}}

// Get returns a port on ip that is free for both TCP and UDP right now
// (memberlist's gossip needs both) and that this process never handed out
// before for ip.
func Get(ip string) (int, error) {
	registry.Lock()
	defer registry.Unlock()
	for range 2000 {
		port := Min + rand.IntN(Max-Min)
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		if registry.handedOut[addr] {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		registry.handedOut[addr] = true
		return port, nil
	}
	return 0, fmt.Errorf("freeport: no free port on %s in [%d, %d)", ip, Min, Max)
}

// Addr is Get for ip, returned as "ip:port".
func Addr(ip string) (string, error) {
	port, err := Get(ip)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip, strconv.Itoa(port)), nil
}
