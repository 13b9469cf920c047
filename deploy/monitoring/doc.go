// Package monitoring holds no code: its directory has the Prometheus alert
// rules (alerts.yaml, unit-tested by alerts_test.yaml), an example
// Prometheus configuration and the Grafana dashboard. Its tests run
// promtool on them and check every metric they reference against the
// /metrics of a live 3-node provider.
package monitoring
