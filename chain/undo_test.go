package chain

import (
	"errors"
	"reflect"
	"testing"

	"go.uber.org/zap"
)

func TestUndoStackUnwindsInReverseAndKeepsGoing(t *testing.T) {
	var ran []string
	u := undoStack{log: zap.NewNop()}
	for _, step := range []string{"release", "delegate DEL", "rules", "host veth"} {
		u.push(step, func() error {
			ran = append(ran, step)
			if step == "rules" {
				return errors.New("netns gone")
			}
			return nil
		})
	}
	u.unwind()
	if want := []string{"host veth", "rules", "delegate DEL", "release"}; !reflect.DeepEqual(ran, want) {
		t.Fatalf("undos ran %v, want %v (last pushed first, a failure does not stop the rest)", ran, want)
	}
	ran = nil
	u.unwind()
	if len(ran) != 0 {
		t.Fatalf("a second unwind ran %v again", ran)
	}
}
