package nfqueue

import (
	"context"
	"encoding/binary"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/jepsen/internal/testnet"
)

func TestPacketIDs(t *testing.T) {
	q := &Queue{cfg: Config{Queue: 3}}
	hdr := make([]byte, 7)
	binary.BigEndian.PutUint32(hdr, 42)
	m1 := q.message(msgPacket, 0, []attr{{attrPacketHdr, hdr}, {9, []byte{1, 2, 3}}})
	binary.BigEndian.PutUint32(hdr, 43)
	m2 := q.message(msgPacket, 0, []attr{{7, []byte{1}}, {attrPacketHdr, hdr}})
	other := q.message(msgConfig, 0, []attr{{attrPacketHdr, hdr}})
	tests := []struct {
		name string
		in   []byte
		want []uint32
	}{
		{"one", m1, []uint32{42}},
		{"two in one read", append(slices.Clone(m1), m2...), []uint32{42, 43}},
		{"not a packet message", other, nil},
		{"truncated", m1[:len(m1)-5], nil},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		if got := packetIDs(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("%s: packetIDs = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestQueueDelaysAndPassesTraffic(t *testing.T) {
	testnet.RequireHost(t, "ip", "iptables")
	lock := testnet.LockForTest(t) // waits its turn; the budget starts after
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := testnet.Create(ctx, testnet.Config{Hosts: 2, Lock: lock})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.Background())
	h0, h1 := n.Hosts[0], n.Hosts[1]
	var q *Queue
	if err := h0.Do(func() error {
		var err error
		q, err = Open(Config{Queue: 5, Delay: 50 * time.Millisecond})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	if out, err := h0.Command(ctx, "iptables", "-A", "OUTPUT", "-d", h1.Addr.String(), "-j", "NFQUEUE", "--queue-num", "5", "--queue-bypass").CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	var ln net.Listener
	if err := h1.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(h1.Addr.String(), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	var c net.Conn
	if err := h0.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 5 {
		start := time.Now()
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		t.Logf("round trip %d through the delaying queue: %v", i, time.Since(start))
	}
	if q.Packets() == 0 {
		t.Error("no packet went through the queue")
	}
	if err := q.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}
