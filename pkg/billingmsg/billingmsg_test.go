package billingmsg_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"moviestream/pkg/billingmsg"
	"moviestream/pkg/errs"
)

func TestParseValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want billingmsg.Order
	}{
		{"documented example, strings", `{"user_id":"3","number_of_items":"5","total_amount":"180"}`,
			billingmsg.Order{UserID: "3", NumberOfItems: 5, TotalAmount: 18000}},
		{"numbers", `{"user_id":3,"number_of_items":5,"total_amount":180.5}`,
			billingmsg.Order{UserID: "3", NumberOfItems: 5, TotalAmount: 18050}},
		{"two decimals", `{"user_id":"u-1","number_of_items":1,"total_amount":"0.99"}`,
			billingmsg.Order{UserID: "u-1", NumberOfItems: 1, TotalAmount: 99}},
		{"zero amount", `{"user_id":"u","number_of_items":1,"total_amount":0}`,
			billingmsg.Order{UserID: "u", NumberOfItems: 1, TotalAmount: 0}},
		{"negative zero is zero", `{"user_id":"u","number_of_items":1,"total_amount":"-0.00"}`,
			billingmsg.Order{UserID: "u", NumberOfItems: 1, TotalAmount: 0}},
		{"max amount", `{"user_id":"u","number_of_items":1,"total_amount":"9999999999.99"}`,
			billingmsg.Order{UserID: "u", NumberOfItems: 1, TotalAmount: billingmsg.MaxTotalCents}},
		{"max items", `{"user_id":"u","number_of_items":2147483647,"total_amount":1}`,
			billingmsg.Order{UserID: "u", NumberOfItems: billingmsg.MaxItems, TotalAmount: 100}},
		{"spaces trimmed in strings", `{"user_id":"  7 ","number_of_items":" 2 ","total_amount":" 3.5 "}`,
			billingmsg.Order{UserID: "7", NumberOfItems: 2, TotalAmount: 350}},
		{"unknown fields ignored", `{"user_id":"u","number_of_items":1,"total_amount":1,"note":"hi"}`,
			billingmsg.Order{UserID: "u", NumberOfItems: 1, TotalAmount: 100}},
		{"64 character user", `{"user_id":"` + strings.Repeat("é", 64) + `","number_of_items":1,"total_amount":1}`,
			billingmsg.Order{UserID: strings.Repeat("é", 64), NumberOfItems: 1, TotalAmount: 100}},
		{"whitespace around object", " \n{\"user_id\":\"u\",\"number_of_items\":1,\"total_amount\":1}\n",
			billingmsg.Order{UserID: "u", NumberOfItems: 1, TotalAmount: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := billingmsg.Parse([]byte(tt.body))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("order (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	valid := map[string]string{"user_id": `"3"`, "number_of_items": `"5"`, "total_amount": `"180"`}
	with := func(field, raw string) string {
		parts := []string{}
		for _, f := range []string{"user_id", "number_of_items", "total_amount"} {
			v := valid[f]
			if f == field {
				if raw == "" {
					continue
				}
				v = raw
			}
			parts = append(parts, `"`+f+`":`+v)
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	tests := []struct {
		name      string
		body      string
		field     string // "" means malformed body
		reasonHas string
	}{
		{"empty body", ``, "", "JSON object"},
		{"not json", `hello`, "", "JSON object"},
		{"array", `[1,2]`, "", "JSON object"},
		{"truncated", `{"user_id":"3"`, "", "invalid JSON"},
		{"invalid utf-8", "{\"user_id\":\"\xff\xfe\",\"number_of_items\":1,\"total_amount\":1}", "", "UTF-8"},
		{"trailing garbage", `{"user_id":"3","number_of_items":1,"total_amount":1} x`, "", "invalid JSON"},
		{"too large", `{"pad":"` + strings.Repeat("a", billingmsg.MaxBodyBytes) + `"}`, "", "limit"},
		{"missing user_id", with("user_id", ""), "user_id", "required"},
		{"null user_id", with("user_id", "null"), "user_id", "required"},
		{"empty user_id", with("user_id", `""`), "user_id", "empty"},
		{"blank user_id", with("user_id", `"   "`), "user_id", "empty"},
		{"long user_id", with("user_id", `"`+strings.Repeat("a", 65)+`"`), "user_id", "at most 64"},
		{"control char user_id", with("user_id", `"a\u0000b"`), "user_id", "control"},
		{"bool user_id", with("user_id", "true"), "user_id", "string or a number"},
		{"object user_id", with("user_id", `{}`), "user_id", "string or a number"},
		{"missing items", with("number_of_items", ""), "number_of_items", "required"},
		{"zero items", with("number_of_items", "0"), "number_of_items", "at least 1"},
		{"negative items", with("number_of_items", `"-1"`), "number_of_items", "at least 1"},
		{"fractional items", with("number_of_items", "1.5"), "number_of_items", "whole number"},
		{"exponent items", with("number_of_items", "1e2"), "number_of_items", "whole number"},
		{"text items", with("number_of_items", `"five"`), "number_of_items", "whole number"},
		{"too many items", with("number_of_items", "2147483648"), "number_of_items", "at most"},
		{"huge items", with("number_of_items", "99999999999999999999999"), "number_of_items", "at most"},
		{"array items", with("number_of_items", "[1]"), "number_of_items", "string or a number"},
		{"missing total", with("total_amount", ""), "total_amount", "required"},
		{"negative total", with("total_amount", "-1"), "total_amount", "negative"},
		{"three decimals", with("total_amount", `"1.234"`), "total_amount", "2 decimal"},
		{"comma decimal", with("total_amount", `"12,50"`), "total_amount", "decimal number"},
		{"exponent total", with("total_amount", "1e2"), "total_amount", "decimal number"},
		{"trailing point", with("total_amount", `"1."`), "total_amount", "decimal number"},
		{"leading point", with("total_amount", `".5"`), "total_amount", "decimal number"},
		{"too large total", with("total_amount", `"10000000000"`), "total_amount", "at most"},
		{"bool total", with("total_amount", "false"), "total_amount", "string or a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := billingmsg.Parse([]byte(tt.body))
			if err == nil {
				t.Fatalf("Parse(%.80q) succeeded, want an error", tt.body)
			}
			if !errors.Is(err, billingmsg.ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			var fe *errs.FieldError
			switch {
			case tt.field == "":
				if !errors.Is(err, billingmsg.ErrMalformed) {
					t.Errorf("error %v: want ErrMalformed", err)
				}
			case !errors.As(err, &fe):
				t.Errorf("error %v: want a FieldError for %s", err, tt.field)
			case fe.Field != tt.field:
				t.Errorf("field = %q, want %q", fe.Field, tt.field)
			}
			if !strings.Contains(err.Error(), tt.reasonHas) {
				t.Errorf("error %q does not mention %q", err, tt.reasonHas)
			}
		})
	}
}

func TestAmountString(t *testing.T) {
	t.Parallel()
	for cents, want := range map[billingmsg.Amount]string{0: "0.00", 5: "0.05", 18000: "180.00", 18050: "180.50", billingmsg.MaxTotalCents: "9999999999.99"} {
		if got := cents.String(); got != want {
			t.Errorf("Amount(%d).String() = %q, want %q", int64(cents), got, want)
		}
	}
}

// FuzzParse checks that no input panics and that every accepted order obeys
// the rules billing's table relies on.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"user_id":"3","number_of_items":"5","total_amount":"180"}`,
		`{"user_id":3,"number_of_items":5,"total_amount":180.5}`,
		`{"user_id":"","number_of_items":0,"total_amount":-1}`,
		`{"user_id":"a\u0000","number_of_items":"1e3","total_amount":"1.234"}`,
		`[]`, ``, `{`, `null`, `{"total_amount":"-0"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := billingmsg.Parse(body)
		if err != nil {
			if !errors.Is(err, billingmsg.ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		if o.UserID == "" || utf8.RuneCountInString(o.UserID) > billingmsg.MaxUserIDLen || !utf8.ValidString(o.UserID) || strings.ContainsRune(o.UserID, 0) {
			t.Fatalf("accepted bad user_id %q", o.UserID)
		}
		if o.NumberOfItems < 1 {
			t.Fatalf("accepted number_of_items %d", o.NumberOfItems)
		}
		if o.TotalAmount < 0 || o.TotalAmount > billingmsg.MaxTotalCents {
			t.Fatalf("accepted total_amount %d cents", o.TotalAmount)
		}
		if back, err := billingmsg.ParseAmount(o.TotalAmount.String()); err != nil || back != o.TotalAmount {
			t.Fatalf("amount %s does not round-trip: %d, %v", o.TotalAmount, back, err)
		}
	})
}
