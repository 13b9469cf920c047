// Package report writes a jepsen run's results into its output folder:
//
//   - summary.txt: the table a person reads first (operations and outcomes
//     by kind, latencies, faults, linearizability verdicts, anomalies: 0 or
//     a list), also printed at the end of the run;
//   - results.json: the verdict, configuration, per-kind counts, anomalies,
//     per-room verdicts and fault windows;
//   - history.json: every operation, fanout delivery, observed message,
//     final state and commit chain, for digging;
//   - timeline.svg: throughput and latency over time with the fault
//     windows shaded (hand-written SVG, no plotting dependency);
//   - linearizability/<room>.html: porcupine's visualization of each room's
//     history (open it in a browser; an illegal history shows the longest
//     linearizable prefix and where it breaks).
//
// jepsen/README.md explains how to read them.
package report
