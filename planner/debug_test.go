package planner

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

// TestDebugCase replays one generated case of TestPlansKeepInvariants with
// every round's plan printed: CASE=192 go test ./planner -run TestDebugCase -v
func TestDebugCase(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("CASE"))
	if err != nil {
		t.Skip("set CASE to a case number of TestPlansKeepInvariants")
	}
	r := rand.New(rand.NewPCG(uint64(n), 7))
	sp, obs, opts := genState(r)
	m := &model{t: t, sp: sp, c: clone(obs), nextIP: 100, nextID: 0x1000}
	p, err := ComputeWith(sp, m.c, opts)
	if err != nil {
		t.Fatal(err)
	}
	stop := -1
	if n%3 == 0 && len(p.Steps) > 0 {
		stop = r.IntN(len(p.Steps))
	}
	for round := 0; round < 3; round++ {
		p, err := ComputeWith(sp, m.c, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d (stop after %d):\n%s", round, stop, Format(p))
		for i, s := range p.Steps {
			if round == 0 && i == stop {
				break
			}
			m.apply(p, s)
		}
		opts = Options{}
	}
}
