package order_test

import (
	"errors"
	"testing"

	"moviestream/pkg/billingmsg"
	"moviestream/services/billing/internal/order"
)

func TestFromMessage(t *testing.T) {
	t.Parallel()
	body := []byte(`{"user_id":"3","number_of_items":"5","total_amount":"180"}`)
	o, err := order.FromMessage("m-1", body)
	if err != nil || o != (order.Order{MessageID: "m-1", Order: billingmsg.Order{UserID: "3", NumberOfItems: 5, TotalAmount: 18000}}) {
		t.Fatalf("FromMessage = %+v, %v", o, err)
	}
	if _, err := order.FromMessage("", body); err != nil {
		t.Fatalf("a message without id must be accepted: %v", err)
	}
	for _, id := range []string{"a\x00b", "\xff\xfe", "line\nbreak"} {
		if _, err := order.FromMessage(id, body); !errors.Is(err, billingmsg.ErrInvalid) {
			t.Errorf("message id %q: err = %v, want ErrInvalid", id, err)
		}
	}
	if _, err := order.FromMessage("m", []byte(`{}`)); !errors.Is(err, billingmsg.ErrInvalid) {
		t.Errorf("empty order: err = %v, want ErrInvalid", err)
	}
}
