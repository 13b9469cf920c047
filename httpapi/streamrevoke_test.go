package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/mimihub/mimi-hub/fsm"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

// TestStreamEndsAtRevocation: a long poll authenticated its token when it
// began, and may wait a minute. A device revoked, or a user suspended,
// while it waits must not receive what arrives after: the poll answers
// 401 at the next change instead of the new items.
func TestStreamEndsAtRevocation(t *testing.T) {
	for _, c := range []struct {
		name  string
		block func(e *env, phone, laptop *member)
	}{
		{"revoked device", func(e *env, phone, laptop *member) {
			id, _ := phone.uri.Parse()
			want(e.t, e.apiDo(http.MethodDelete, "/v1/devices/"+id.Device, laptop.token, nil), http.StatusNoContent, "revoke the phone")
		}},
		{"suspended user", func(e *env, phone, _ *member) {
			res, err := e.b.Apply(e.t.Context(), fsm.CmdSuspendUser, nil, "", &fsm.SuspendUserBody{User: phone.user, Suspend: true})
			if err != nil || res.Kind != fsm.OK {
				e.t.Fatalf("suspend: %v %+v", err, res)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, "a.example", nil)
			phone := e.register("alice", "phone")
			laptop := e.link(phone, "laptop")
			ft := installFakeTimer(e) // never fires
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			after := e.stream(phone, 0).Last
			done := streamAsync(e, ctx, phone, fmt.Sprintf("wait=60&after=%d", after))
			waitFor(t, ft.waits, "the poll to wait")
			c.block(e, phone, laptop)
			consent := wire.MustMarshal(&proto.ConsentEntry{Operation: proto.ConsentRequest, Requester: "mimi://b.example/u/bob", Target: phone.user})
			e.fedDo(http.MethodPost, "/requestConsent/a.example", "b.example", consent) // may be refused for a suspended user
			select {
			case rec := <-done:
				wantJSONError(t, rec, http.StatusUnauthorized, kindNotAllowed, "the blocked device's waiting poll")
			case <-time.After(5 * time.Second):
				t.Fatal("the blocked device's poll still waits after a change")
			}
		})
	}
}
