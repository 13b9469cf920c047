// Package nfqueue delays packets in user space: it binds a netfilter queue
// (iptables -j NFQUEUE) over a raw netlink socket (the nfnetlink_queue
// protocol, spoken directly with golang.org/x/sys/unix: no module for it
// is served by the proxy) and accepts every queued packet after a fixed
// delay, in arrival order. The jepsen harness uses it for the packet-delay
// nemesis because the kernel it runs on lacks tc netem.
//
// Packets are copied as metadata only (the verdict needs just the packet
// id). The queue fails open: when it is full the kernel accepts packets
// instead of dropping them, and an iptables rule with --queue-bypass
// accepts packets while no program is bound, so a crashed harness never
// blackholes traffic.
package nfqueue
