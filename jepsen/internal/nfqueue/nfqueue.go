package nfqueue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// nfnetlink_queue constants (linux/netfilter/nfnetlink_queue.h).
const (
	subsysQueue = 3 // NFNL_SUBSYS_QUEUE

	msgPacket  = 0 // NFQNL_MSG_PACKET
	msgVerdict = 1 // NFQNL_MSG_VERDICT
	msgConfig  = 2 // NFQNL_MSG_CONFIG

	attrCfgCmd    = 1 // NFQA_CFG_CMD
	attrCfgParams = 2 // NFQA_CFG_PARAMS
	attrCfgMaxLen = 3 // NFQA_CFG_QUEUE_MAXLEN
	attrCfgMask   = 4 // NFQA_CFG_MASK
	attrCfgFlags  = 5 // NFQA_CFG_FLAGS

	attrPacketHdr  = 1 // NFQA_PACKET_HDR
	attrVerdictHdr = 2 // NFQA_VERDICT_HDR

	cmdBind   = 1 // NFQNL_CFG_CMD_BIND
	cmdUnbind = 2 // NFQNL_CFG_CMD_UNBIND

	copyMeta = 1 // NFQNL_COPY_META

	flagFailOpen = 1 // NFQA_CFG_F_FAIL_OPEN

	verdictAccept = 1 // NF_ACCEPT

	nlmsgHdrLen = 16
	nfgenHdrLen = 4
)

// Config describes a delaying queue.
type Config struct {
	// Queue is the queue number the iptables rules send packets to.
	Queue uint16
	// Delay is how long every packet is held.
	Delay time.Duration
	// MaxLen bounds the packets the kernel holds for the queue; zero
	// means 4096. Past it, packets pass undelayed (fail open).
	MaxLen uint32
}

// Queue is a bound netfilter queue that delays packets.
type Queue struct {
	cfg   Config
	fd    int
	seq   atomic.Uint32
	held  chan held
	count atomic.Uint64

	mu      sync.Mutex // serializes sends
	stop    chan struct{}
	done    sync.WaitGroup
	closeMu sync.Once
	errMu   sync.Mutex
	err     error
}

type held struct {
	id  uint32
	due time.Time
}

// Open binds queue cfg.Queue in the calling thread's network namespace
// (run it inside testnet.InNamespace for a host's) and starts delaying.
func Open(cfg Config) (*Queue, error) {
	if cfg.MaxLen == 0 {
		cfg.MaxLen = 4096
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("nfqueue: netlink socket: %w", err)
	}
	q := &Queue{cfg: cfg, fd: fd, held: make(chan held, cfg.MaxLen), stop: make(chan struct{})}
	fail := func(err error) (*Queue, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("nfqueue %d: %w", cfg.Queue, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fail(err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail(err)
	}
	cmd := make([]byte, 4)
	cmd[0] = cmdBind
	binary.BigEndian.PutUint16(cmd[2:], unix.AF_INET)
	params := make([]byte, 5)
	params[4] = copyMeta
	maxLen := binary.BigEndian.AppendUint32(nil, cfg.MaxLen)
	flags := binary.BigEndian.AppendUint32(nil, flagFailOpen)
	for _, attrs := range [][]attr{
		{{attrCfgCmd, cmd}},
		{{attrCfgParams, params}, {attrCfgMaxLen, maxLen}, {attrCfgMask, flags}, {attrCfgFlags, flags}},
	} {
		if err := q.request(msgConfig, attrs); err != nil {
			return fail(err)
		}
	}
	q.done.Add(2)
	go q.receive()
	go q.release()
	return q, nil
}

// Packets returns the number of packets delayed so far.
func (q *Queue) Packets() uint64 { return q.count.Load() }

type attr struct {
	typ  uint16
	data []byte
}

// message encodes a netlink message of the queue subsystem.
func (q *Queue) message(typ uint16, flags uint16, attrs []attr) []byte {
	b := make([]byte, nlmsgHdrLen+nfgenHdrLen)
	binary.NativeEndian.PutUint16(b[4:], subsysQueue<<8|typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], q.seq.Add(1))
	b[16] = unix.AF_UNSPEC
	b[17] = 0 // NFNETLINK_V0
	binary.BigEndian.PutUint16(b[18:], q.cfg.Queue)
	for _, a := range attrs {
		h := make([]byte, 4)
		binary.NativeEndian.PutUint16(h, uint16(4+len(a.data)))
		binary.NativeEndian.PutUint16(h[2:], a.typ)
		b = append(b, h...)
		b = append(b, a.data...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	return b
}

// request sends a config message and waits for its acknowledgement.
func (q *Queue) request(typ uint16, attrs []attr) error {
	msg := q.message(typ, unix.NLM_F_REQUEST|unix.NLM_F_ACK, attrs)
	seq := binary.NativeEndian.Uint32(msg[8:])
	if err := unix.Sendto(q.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sending a config message: %w", err)
	}
	buf := make([]byte, 8192)
	for range 100 {
		n, _, err := unix.Recvfrom(q.fd, buf, 0)
		if err != nil {
			return fmt.Errorf("waiting for the acknowledgement: %w", err)
		}
		for b := buf[:n]; len(b) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < nlmsgHdrLen || l > len(b) {
				break
			}
			if binary.NativeEndian.Uint16(b[4:]) == unix.NLMSG_ERROR && binary.NativeEndian.Uint32(b[8:]) == seq && l >= nlmsgHdrLen+4 {
				if code := int32(binary.NativeEndian.Uint32(b[16:])); code != 0 {
					return fmt.Errorf("the kernel refused the config message: %w", unix.Errno(-code))
				}
				return nil
			}
			b = b[align(l):]
		}
	}
	return errors.New("no acknowledgement")
}

func align(n int) int { return (n + 3) &^ 3 }

// receive reads queued packets and holds them.
func (q *Queue) receive() {
	defer q.done.Done()
	buf := make([]byte, 65536)
	for {
		select {
		case <-q.stop:
			return
		default:
		}
		n, _, err := unix.Recvfrom(q.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOBUFS) {
				continue
			}
			q.fail(fmt.Errorf("nfqueue %d: receiving: %w", q.cfg.Queue, err))
			return
		}
		now := time.Now()
		for _, id := range packetIDs(buf[:n]) {
			q.count.Add(1)
			select {
			case q.held <- held{id: id, due: now.Add(q.cfg.Delay)}:
			default:
				q.verdict(id) // full: let it pass
			}
		}
	}
}

// packetIDs returns the packet ids of the NFQNL_MSG_PACKET messages in b.
func packetIDs(b []byte) []uint32 {
	var ids []uint32
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b))
		if l < nlmsgHdrLen || l > len(b) {
			break
		}
		if binary.NativeEndian.Uint16(b[4:]) == subsysQueue<<8|msgPacket && l >= nlmsgHdrLen+nfgenHdrLen {
			for a := b[nlmsgHdrLen+nfgenHdrLen : l]; len(a) >= 4; {
				al := int(binary.NativeEndian.Uint16(a))
				typ := binary.NativeEndian.Uint16(a[2:]) & 0x3fff
				if al < 4 || al > len(a) {
					break
				}
				if typ == attrPacketHdr && al >= 4+4 {
					ids = append(ids, binary.BigEndian.Uint32(a[4:]))
				}
				if align(al) >= len(a) {
					break
				}
				a = a[align(al):]
			}
		}
		if align(l) >= len(b) {
			break
		}
		b = b[align(l):]
	}
	return ids
}

// release accepts held packets when they are due, in order.
func (q *Queue) release() {
	defer q.done.Done()
	for {
		select {
		case <-q.stop:
			return
		case h := <-q.held:
			if d := time.Until(h.due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-q.stop:
					t.Stop()
					q.verdict(h.id)
					return
				case <-t.C:
				}
			}
			q.verdict(h.id)
		}
	}
}

func (q *Queue) verdict(id uint32) {
	v := make([]byte, 8)
	binary.BigEndian.PutUint32(v, verdictAccept)
	binary.BigEndian.PutUint32(v[4:], id)
	msg := q.message(msgVerdict, unix.NLM_F_REQUEST, []attr{{attrVerdictHdr, v}})
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := unix.Sendto(q.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		q.fail(fmt.Errorf("nfqueue %d: verdict: %w", q.cfg.Queue, err))
	}
}

func (q *Queue) fail(err error) {
	q.errMu.Lock()
	defer q.errMu.Unlock()
	if q.err == nil {
		q.err = err
	}
}

// Close accepts every held packet at once, unbinds the queue and closes
// the socket. Remove the iptables rules first, or packets queued after
// Close pass only thanks to --queue-bypass.
func (q *Queue) Close(ctx context.Context) error {
	var err error
	q.closeMu.Do(func() {
		close(q.stop)
		waited := make(chan struct{})
		go func() { q.done.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-ctx.Done():
			err = ctx.Err()
			return
		}
		for {
			select {
			case h := <-q.held:
				q.verdict(h.id)
				continue
			default:
			}
			break
		}
		cmd := make([]byte, 4)
		cmd[0] = cmdUnbind
		binary.BigEndian.PutUint16(cmd[2:], unix.AF_INET)
		_ = q.request(msgConfig, []attr{{attrCfgCmd, cmd}})
		q.errMu.Lock()
		err = errors.Join(q.err, unix.Close(q.fd))
		q.errMu.Unlock()
	})
	return err
}
