package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mimihub/mimi-hub/mimi/client"
)

// TestDeviceCommands drives the account commands: a device approved by
// code, a device invited (invite-device, link -code), the device list, revocation (the revoked profile is refused with a
// hint), and the operator's users commands.
func TestDeviceCommands(t *testing.T) {
	w := startWorld(t, "")
	home := t.TempDir()
	t.Setenv("MIMICTL_HOME", home)
	t.Setenv("MIMICTL_PROFILE", "")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("correct horse battery\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := func(want int, args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, args...)
		if code != want {
			t.Fatalf("mimictl %q: exit %d, want %d; %q %q", args, code, want, out, errOut)
		}
		return out + errOut
	}
	cli(0, "register", "-server", w.a.ClientURL, "-ca", w.caFile, "-user", "alice", "-keys", "1", "-password-file", pw)
	laptop := []string{"-profile", "alice@a.example"}
	cli(0, "link", "-server", w.a.ClientURL, "-ca", w.caFile, "-user", "alice", "-device", "phone", "-keys", "1", "-password-file", pw)
	phone := []string{"-profile", "alice@a.example-2"}

	// A new device (a library client here: 'link' would wait) shows a
	// code; the laptop approves it.
	hc, tr, err := httpClient(w.caFile, "")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	u, err := client.NewUser(client.UserConfig{BaseURL: w.a.ClientURL, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	req, err := u.RequestLink(t.Context(), "alice", "tablet")
	if err != nil {
		t.Fatal(err)
	}
	if out := cli(0, append(laptop, "devices")...); !strings.Contains(out, "mimi://a.example/u/alice/d/tablet") || !strings.Contains(out, "waiting for approval") {
		t.Fatalf("devices before approval:\n%s", out)
	}
	if out := cli(0, append(laptop, "approve", strings.ToLower(req.Code))...); !strings.Contains(out, "approved mimi://a.example/u/alice/d/tablet") {
		t.Fatalf("approve: %s", out)
	}
	cli(1, append(laptop, "approve", req.Code)...)

	// The way to add a device: the laptop invites, the new machine
	// redeems the code it printed. A wrong code is refused, clearly.
	inv := cli(0, append(laptop, "invite-device")...)
	code := regexp.MustCompile(`-code ([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})`).FindStringSubmatch(inv)
	if code == nil || !strings.Contains(inv, "mimictl link -user alice -device NAME") {
		t.Fatalf("invite-device printed no code:\n%s", inv)
	}
	wrong := "AAAA-AAAA-AAAA"
	if code[1] == wrong {
		wrong = "BBBB-BBBB-BBBB"
	}
	if out := cli(1, "-profile", "tv-wrong", "link", "-server", w.a.ClientURL, "-ca", w.caFile, "-user", "alice", "-device", "tv", "-keys", "1", "-code", wrong); !strings.Contains(out, "HTTP 404") || !strings.Contains(out, "no open device invitation") {
		t.Fatalf("link with a wrong code: %s", out)
	}
	cli(2, "link", "-server", w.a.ClientURL, "-ca", w.caFile, "-user", "alice", "-device", "tv", "-code", code[1], "-password-file", pw)
	if out := cli(0, "-profile", "tv", "link", "-server", w.a.ClientURL, "-ca", w.caFile, "-user", "alice", "-device", "tv", "-keys", "1", "-code", strings.ToLower(code[1])); !strings.Contains(out, "invited") {
		t.Fatalf("link -code: %s", out)
	}
	cli(0, "-profile", "tv", "whoami")
	// An invitation the user thinks better of: listed by id, cancelled,
	// and its code then adds nothing.
	inv = cli(0, append(laptop, "invite-device")...)
	code = regexp.MustCompile(`-code ([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})`).FindStringSubmatch(inv)
	id := regexp.MustCompile(`mimictl cancel-invite ([0-9a-f]{32})`).FindStringSubmatch(inv)
	if code == nil || id == nil {
		t.Fatalf("invite-device printed no code or id:\n%s", inv)
	}
	if out := cli(0, append(phone, "devices")...); !strings.Contains(out, "invitation "+id[1]+" by mimi://a.example/u/alice/d/cli") {
		t.Fatalf("devices does not list the open invitation %s:\n%s", id[1], out)
	}
	if out := cli(0, append(phone, "cancel-invite", id[1])...); !strings.Contains(out, "cancelled invitation "+id[1]) {
		t.Fatalf("cancel-invite: %s", out)
	}
	cli(1, append(phone, "cancel-invite", id[1])...)
	if out := cli(1, "-profile", "tv2", "link", "-server", w.a.ClientURL, "-ca", w.caFile, "-user", "alice", "-device", "tv2", "-keys", "1", "-code", code[1]); !strings.Contains(out, "HTTP 404") {
		t.Fatalf("link with a cancelled invitation's code: %s", out)
	}
	out := cli(0, append(laptop, "devices")...)
	for _, want := range []string{"alice/d/cli", "registered", "(this device)", "alice/d/phone", "password", "alice/d/tablet", "linked", "alice/d/tv", "invited"} {
		if !strings.Contains(out, want) {
			t.Fatalf("devices lacks %q:\n%s", want, out)
		}
	}
	// Revoking the phone: its profile is refused, with a hint.
	cli(0, append(laptop, "revoke", "phone")...)
	if out := cli(1, append(phone, "whoami")...); !strings.Contains(out, "HTTP 401") || !strings.Contains(out, "revoked") {
		t.Fatalf("whoami of a revoked device: %s", out)
	}
	// The operator.
	ops := []string{"-ops", w.a.OpsURL}
	if out := cli(0, append([]string{"users", "devices", "alice"}, ops...)...); !strings.Contains(out, "alice/d/tablet") || strings.Contains(out, "alice/d/phone") {
		t.Fatalf("users devices: %s", out)
	}
	cli(0, append([]string{"users", "suspend", "alice"}, ops...)...)
	cli(1, append(laptop, "whoami")...)
	cli(0, append([]string{"users", "unsuspend", "alice"}, ops...)...)
	cli(0, append(laptop, "whoami")...)
	cli(0, append([]string{"users", "revoke", "mimi://a.example/u/alice/d/tablet"}, ops...)...)
	cli(1, append([]string{"users", "revoke", "mimi://a.example/u/alice/d/tablet"}, ops...)...)
	if out := cli(0, append([]string{"users", "invite", "-ttl", "1h"}, ops...)...); !strings.Contains(out, "mimictl register -invite") {
		t.Fatalf("users invite: %s", out)
	}
	cli(1, append([]string{"users", "suspend", "nobody"}, ops...)...)
}
