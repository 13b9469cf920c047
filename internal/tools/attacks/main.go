// Command attacks writes the request bodies internal/tools/attacks/run.sh
// replays against a mimi-hub process (issue 13's measured attacks):
//
//	attacks fanout N                      a fanout batch: one application message of N bytes for mimi://b.example/r/far
//	attacks message N ROOM CLIENT         a client API message body: an application message of N bytes for ROOM naming CLIENT
//
// The messages are well formed for a hub, which cannot decrypt them.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/mimihub/mimi-hub/mimi/mls"
	"github.com/mimihub/mimi-hub/mimi/proto"
	"github.com/mimihub/mimi-hub/mimi/wire"
)

func message(n int, room, sender string) *mls.Message {
	return &mls.Message{Version: mls.MLS10, WireFormat: mls.WirePrivateMessage, Private: &mls.PrivateMessage{GroupID: []byte(room), Epoch: 1,
		ContentType: mls.ContentApplication, AuthenticatedData: []byte(sender), EncryptedSenderData: []byte("s"), Ciphertext: make([]byte, n)}}
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "attacks:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: attacks fanout N | attacks message N ROOM CLIENT")
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 0 || n > 1<<30 {
		return fmt.Errorf("size %q", args[1])
	}
	switch {
	case args[0] == "fanout" && len(args) == 2:
		_, err = os.Stdout.Write(wire.MustMarshal(&proto.FanoutBatch{{Message: message(n, "mimi://b.example/r/far", ""), Timestamp: 1}}))
	case args[0] == "message" && len(args) == 4:
		err = json.NewEncoder(os.Stdout).Encode(map[string][]byte{"message": wire.MustMarshal(message(n, args[2], args[3]))})
	default:
		return fmt.Errorf("usage: attacks fanout N | attacks message N ROOM CLIENT")
	}
	return err
}
