package strs

import "testing"

func TestSameSet(t *testing.T) {
	for _, c := range []struct {
		a, b []string
		want bool
	}{
		{nil, nil, true},
		{[]string{"a", "b"}, []string{"b", "a"}, true},
		{[]string{"a", "a"}, []string{"a", "b"}, false},
		{[]string{"a"}, []string{"a", "b"}, false},
	} {
		if got := SameSet(c.a, c.b); got != c.want {
			t.Errorf("SameSet(%v, %v) = %v", c.a, c.b, got)
		}
	}
}
