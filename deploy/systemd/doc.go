// Package systemd holds no code: its directory has the unit that runs a
// mimi-hub node and the sysusers file that creates its user. Its tests
// have systemd check both and run the unit's ExecStart with the unit's
// user and capabilities (setpriv), binding port 443.
package systemd
