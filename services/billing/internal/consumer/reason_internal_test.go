package consumer

import (
	"fmt"
	"testing"

	"moviestream/pkg/billingmsg"
	"moviestream/services/billing/internal/order"
)

// TestReasonOf: the dead-letter label is a class, never the error's text.
func TestReasonOf(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: user_id: must not be empty", billingmsg.ErrInvalid), ReasonInvalidOrder},
		{billingmsg.ErrMalformed, ReasonInvalidOrder},
		{fmt.Errorf("orderdb: save 1 orders: %w: value too long", order.ErrRejected), ReasonRejectedByDatabase},
		{order.ErrKeyReused, ReasonKeyReused},
	} {
		if got := reasonOf(tt.err); got != tt.want {
			t.Errorf("reasonOf(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
