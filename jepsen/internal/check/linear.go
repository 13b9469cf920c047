package check

import (
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/mimihub/mimi-hub/jepsen/internal/history"
)

// Verdicts of a room's linearizability check.
const (
	VerdictOK      = "ok"
	VerdictIllegal = "illegal"
	// VerdictTimeout: porcupine did not finish in time; no verdict.
	VerdictTimeout = "timeout"
	// VerdictSkipped: the room's chain has no starting state.
	VerdictSkipped = "skipped"
)

// RoomCheck is one room's linearizability result.
type RoomCheck struct {
	Room    string `json:"room"`
	Verdict string `json:"verdict"`
	// Ops is the number of operations checked.
	Ops int `json:"ops"`
	// Model and Info are what porcupine.Visualize needs.
	Model porcupine.Model             `json:"-"`
	Info  porcupine.LinearizationInfo `json:"-"`
}

// RoomOperations turns a room's commits and reads into porcupine
// operations. Refusals other than wrongEpoch, failed or unknown reads and
// commits resolved as not happened are left out (they say nothing about
// the room's state); unknown commits end after everything (end).
func RoomOperations(ops []history.Op, end int64) []porcupine.Operation {
	var out []porcupine.Operation
	for _, o := range ops {
		var po porcupine.Operation
		switch o.Kind {
		case history.KindCommit:
			in := CommitInput{Epoch: o.Epoch, Parent: o.Parent, Hash: o.Hash}
			switch {
			case o.Result == history.OK:
				po = porcupine.Operation{Input: in, Output: CommitOutput{Result: history.OK}, Return: o.Return}
			case o.Result == history.Fail && o.Code == WrongEpoch:
				po = porcupine.Operation{Input: in, Output: CommitOutput{Result: history.Fail, Code: WrongEpoch}, Return: o.Return}
			case o.Result == history.Unknown && o.Resolved != ResolvedNotHappened:
				po = porcupine.Operation{Input: in, Output: CommitOutput{Result: history.Unknown}, Return: end}
			default:
				continue
			}
		case history.KindRead:
			if o.Result != history.OK {
				continue
			}
			po = porcupine.Operation{Input: ReadInput{}, Output: ReadOutput{State: RoomState{Epoch: o.Epoch, Hash: o.Hash}}, Return: o.Return}
		default:
			continue
		}
		po.ClientId = o.Process
		po.Call = o.Call
		po.Metadata = o.ID
		out = append(out, po)
	}
	return out
}

// Linearizable checks each room of the chains whose history has a start:
// its operations against RoomModel from the chain's first link. timeout
// bounds each room's search (0: none).
func Linearizable(snap *history.Snapshot, timeout time.Duration) ([]RoomCheck, []Anomaly) {
	byRoom := map[string][]history.Op{}
	for _, o := range snap.Ops {
		if o.Kind == history.KindCommit || o.Kind == history.KindRead {
			byRoom[o.Room] = append(byRoom[o.Room], o)
		}
	}
	end := snap.End() + 1
	var checks []RoomCheck
	var anomalies []Anomaly
	for _, c := range snap.Chains {
		ops := byRoom[c.Room]
		if len(c.Links) == 0 {
			checks = append(checks, RoomCheck{Room: c.Room, Verdict: VerdictSkipped, Ops: len(ops)})
			continue
		}
		model := RoomModel(RoomState{Epoch: c.Links[0].Epoch, Hash: c.Links[0].Hash})
		pops := RoomOperations(ops, end)
		res, info := porcupine.CheckOperationsVerbose(model, pops, timeout)
		rc := RoomCheck{Room: c.Room, Ops: len(pops), Model: model, Info: info}
		switch res {
		case porcupine.Ok:
			rc.Verdict = VerdictOK
		case porcupine.Illegal:
			rc.Verdict = VerdictIllegal
			anomalies = append(anomalies, anomaly(NotLinearizable, c.Room, nil,
				"no order of its %d commits and reads is consistent with a room accepting one commit per epoch (see the room's HTML visualization)", len(pops)))
		default:
			rc.Verdict = VerdictTimeout
		}
		checks = append(checks, rc)
	}
	return checks, anomalies
}
