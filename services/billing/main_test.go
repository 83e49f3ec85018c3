package main

import (
	"errors"
	"strings"
	"testing"

	"moviestream/pkg/config"
)

func TestConsumerConfigRefusesWhatTheBrokerWouldMisread(t *testing.T) {
	tests := []struct {
		name, prefetch, batch string
		wantErr               string // "" when accepted
	}{
		{"defaults of .env", "4000", "1000", ""},
		{"batch equal to prefetch", "500", "500", ""},
		{"prefetch above the 16-bit AMQP field", "70000", "500", `BILLING_PREFETCH="70000" is not an integer in 1..65535`},
		{"prefetch 65536 would mean unlimited", "65536", "500", `BILLING_PREFETCH="65536" is not an integer in 1..65535`},
		{"zero prefetch", "0", "500", `BILLING_PREFETCH="0" is not an integer in 1..65535`},
		{"zero batch", "2000", "0", `BILLING_BATCH_SIZE="0" is not an integer in 1..65535`},
		{"batch above prefetch", "400", "500", "BILLING_BATCH_SIZE=500 is above BILLING_PREFETCH=400"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for key, value := range map[string]string{
				"RABBITMQ_ADDRS": "127.0.0.1:5672", "RABBITMQ_VHOST": "v",
				"BILLING_RABBITMQ_USER": "u", "BILLING_RABBITMQ_PASSWORD": "p", "RABBITMQ_QUEUE": "q",
				"BILLING_PREFETCH": tc.prefetch, "BILLING_BATCH_SIZE": tc.batch,
			} {
				t.Setenv(key, value)
			}
			var env config.Reader
			cfg := consumerConfig(&env)
			err := env.Err()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if cfg.Prefetch <= 0 || cfg.BatchSize <= 0 {
					t.Errorf("accepted but not read: %+v", cfg)
				}
				return
			}
			if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Err() = %v, want ErrInvalid containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestInstanceNumberFromPM2(t *testing.T) {
	tests := []struct {
		name, value string // value "" leaves BILLING_INSTANCE unset
		want        int
		wantErr     bool
	}{
		{name: "alone on its host", want: 0},
		{name: "second of two", value: "1", want: 1},
		{name: "last allowed", value: "15", want: 15},
		{name: "beyond the ports kept for billing", value: "16", wantErr: true},
		{name: "negative", value: "-1", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.value != "" {
				t.Setenv("BILLING_INSTANCE", tc.value)
			}
			var env config.Reader
			got := instanceNumber(&env)
			if err := env.Err(); (err != nil) != tc.wantErr {
				t.Fatalf("Err() = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Errorf("instanceNumber = %d, want %d", got, tc.want)
			}
		})
	}
}
