// Package testnet builds the jepsen harness's test network out of Linux
// network namespaces: a switch namespace holding a bridge, one namespace
// per host with a veth into the bridge and the address 10.77.0.(10+i)/24,
// and a veth from the root namespace (10.77.0.1, the gateway) so the
// harness itself reaches every host. The bridge lives in its own namespace
// so that the root namespace's firewall never sees the test traffic.
//
// Every name starts with "mj" and the run's id (six hex digits), and a
// state file under /run/mimi-jepsen lists what the run created and its
// process id. Close removes everything (killing the processes left in the
// run's namespaces); Cleanup removes what crashed runs left behind, found
// through their state files and, failing those, by name. Everything here
// needs root.
package testnet
