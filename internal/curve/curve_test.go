package curve

import (
	"bytes"
	"testing"
)

func TestCanonicalU(t *testing.T) {
	p := make([]byte, 32) // 2^255 - 19, little endian
	p[0] = 0xed
	for i := 1; i < 31; i++ {
		p[i] = 0xff
	}
	p[31] = 0x7f
	below := bytes.Clone(p)
	below[0] = 0xec
	top := make([]byte, 32)
	top[31] = 0x80
	for _, tc := range []struct {
		u    []byte
		want bool
	}{{make([]byte, 32), true}, {below, true}, {p, false}, {top, false}} {
		if got := CanonicalU(tc.u); got != tc.want {
			t.Errorf("CanonicalU(%x) = %v, want %v", tc.u, got, tc.want)
		}
	}
}
