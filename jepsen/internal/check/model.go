package check

import (
	"fmt"
	"hash/fnv"

	"github.com/anishathalye/porcupine"

	"github.com/mimihub/mimi-hub/jepsen/internal/history"
)

// RoomState is the model's state of one room: its epoch and confirmed
// transcript hash (hex), which names the whole commit chain.
type RoomState struct {
	Epoch uint64
	Hash  string
}

// String renders the state for porcupine's visualization.
func (s RoomState) String() string { return fmt.Sprintf("epoch %d %s", s.Epoch, short(s.Hash)) }

// CommitInput is a commit operation's input: built on (Epoch, Parent),
// producing Hash.
type CommitInput struct {
	Epoch  uint64
	Parent string
	Hash   string
}

// ReadInput is a read operation's input (reads take none).
type ReadInput struct{}

// CommitOutput is a commit's outcome: history.OK (accepted), history.Fail
// with Code "wrongEpoch", or history.Unknown.
type CommitOutput struct {
	Result history.Outcome
	Code   string
}

// ReadOutput is what a read returned.
type ReadOutput struct {
	State RoomState
}

// WrongEpoch is the update code of a commit refused for its epoch.
const WrongEpoch = "wrongEpoch"

// RoomModel is the sequential specification of a room: it accepts exactly
// one commit per epoch, the one built on its current state, and reads
// return the current state. init is the room's state when the checked
// history starts (after setup).
func RoomModel(init RoomState) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return init },
		Step: func(state, input, output any) (bool, any) {
			s := state.(RoomState)
			switch in := input.(type) {
			case CommitInput:
				out := output.(CommitOutput)
				fits := s.Epoch == in.Epoch && s.Hash == in.Parent
				next := RoomState{Epoch: in.Epoch + 1, Hash: in.Hash}
				switch out.Result {
				case history.OK:
					return fits, next
				case history.Unknown:
					// Open-ended: linearized where it took effect, or
					// after everything if it never did.
					if fits {
						return true, next
					}
					return true, s
				default: // refused as wrongEpoch
					return !fits, s
				}
			case ReadInput:
				return output.(ReadOutput).State == s, s
			}
			return false, s
		},
		Hash: func(state any) uint64 {
			s := state.(RoomState)
			h := fnv.New64a()
			fmt.Fprintf(h, "%d/%s", s.Epoch, s.Hash)
			return h.Sum64()
		},
		DescribeOperation: func(input, output any) string {
			switch in := input.(type) {
			case CommitInput:
				out := output.(CommitOutput)
				res := string(out.Result)
				if out.Code != "" {
					res = out.Code
				}
				return fmt.Sprintf("commit(%d %s -> %s) -> %s", in.Epoch, short(in.Parent), short(in.Hash), res)
			case ReadInput:
				return fmt.Sprintf("read() -> %v", output.(ReadOutput).State)
			}
			return fmt.Sprintf("%v -> %v", input, output)
		},
		DescribeState: func(state any) string { return state.(RoomState).String() },
	}
}

// short abbreviates a hex hash.
func short(h string) string {
	if len(h) > 8 {
		return h[:8]
	}
	if h == "" {
		return "-"
	}
	return h
}
