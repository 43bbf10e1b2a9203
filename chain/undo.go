package chain

import "go.uber.org/zap"

// undoStack takes back a failed ADD: each step that made state (an allocation, the
// delegate's link, rules in the pod, the host veth) pushes how to remove it; on failure
// unwind runs them last first, so the state is taken down in the reverse order it was
// built and no link or allocation is left behind; on success the stack is dropped.
type undoStack struct {
	log   *zap.Logger
	steps []undoStep
}

type undoStep struct {
	what string // what the undo removes, for the log when removing fails
	undo func() error
}

func (u *undoStack) push(what string, undo func() error) {
	u.steps = append(u.steps, undoStep{what: what, undo: undo})
}

// unwind runs every undo, last pushed first. A failing undo is logged and the rest still
// run: each removes its own state, and ipamd's GC or the runtime's DEL catches the rest.
func (u *undoStack) unwind() {
	for i := len(u.steps) - 1; i >= 0; i-- {
		if err := u.steps[i].undo(); err != nil {
			u.log.Error("undoing a failed ADD: "+u.steps[i].what, zap.Error(err))
		}
	}
	u.steps = nil
}
