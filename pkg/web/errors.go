// Package web holds the HTTP pieces the gateway and inventory share: the one
// JSON error shape every response uses, strict JSON request decoding, and an
// http.Server runner with timeouts and graceful shutdown.
package web

import (
	"encoding/json"
	"net/http"
)

// Error codes used across the services. Clients switch on the code; the
// message is for people.
const (
	CodeInvalidJSON      = "invalid_json"
	CodeValidation       = "validation_failed"
	CodeInvalidID        = "invalid_id"
	CodeInvalidHeader    = "invalid_header"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeTooLarge         = "payload_too_large"
	CodeMediaType        = "unsupported_media_type"
	CodeUnavailable      = "service_unavailable"
	CodeBadGateway       = "bad_gateway"
	CodeGatewayTimeout   = "gateway_timeout"
	CodeInternal         = "internal_error"
)

// ErrorBody is the single error shape:
// {"error":{"code":"not_found","message":"movie 42 not found"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail names what went wrong; Field is set when one input field is to blame.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// WriteError writes the JSON error shape with the given status.
func WriteError(w http.ResponseWriter, status int, detail ErrorDetail) {
	WriteJSON(w, status, ErrorBody{Error: detail})
}

// WriteJSON writes v as a JSON response. Encoding errors are ignored on
// purpose: the status line is already sent and the client is the only one
// who could notice.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
