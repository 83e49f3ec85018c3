package orderdb

import (
	"testing"

	"moviestream/pkg/billingmsg"
)

// TestAppendAmountIsAmountString: the array literal writes amounts with
// appendAmount; the comparison of a reused key reads them back with
// Amount.String. Both must spell every amount the same way.
func TestAppendAmountIsAmountString(t *testing.T) {
	t.Parallel()
	amounts := []billingmsg.Amount{0, 1, 9, 10, 99, 100, 101, 18000, 18050, -1, -101, billingmsg.MaxTotalCents}
	for a := billingmsg.Amount(0); a < 1000; a += 7 {
		amounts = append(amounts, a)
	}
	for _, a := range amounts {
		if got, want := string(appendAmount(nil, a)), a.String(); got != want {
			t.Errorf("appendAmount(%d) = %q, want %q", int64(a), got, want)
		}
	}
}

// TestArrayLiteral: quotes and backslashes escaped, NULL unquoted, an
// empty literal is the empty array.
func TestArrayLiteral(t *testing.T) {
	t.Parallel()
	var a arrayLiteral
	if got := a.value(); got != "{}" {
		t.Errorf("empty literal = %q, want {}", got)
	}
	a.addQuoted(`a"b\c`)
	a.addNull()
	a.addRaw([]byte("12.50"))
	if got, want := a.value(), `{"a\"b\\c",NULL,12.50}`; got != want {
		t.Errorf("literal = %q, want %q", got, want)
	}
}
