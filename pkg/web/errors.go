package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"moviestream/pkg/errs"
)

// status is the one table from error code to HTTP status.
var status = map[errs.Code]int{
	errs.InvalidJSON:      http.StatusBadRequest,
	errs.Validation:       http.StatusBadRequest,
	errs.InvalidID:        http.StatusBadRequest,
	errs.InvalidHeader:    http.StatusBadRequest,
	errs.InvalidPath:      http.StatusBadRequest,
	errs.IncompleteBody:   http.StatusBadRequest,
	errs.Unauthorized:     http.StatusUnauthorized,
	errs.NotFound:         http.StatusNotFound,
	errs.MethodNotAllowed: http.StatusMethodNotAllowed,
	errs.TooLarge:         http.StatusRequestEntityTooLarge,
	errs.MediaType:        http.StatusUnsupportedMediaType,
	errs.Internal:         http.StatusInternalServerError,
	errs.BadGateway:       http.StatusBadGateway,
	errs.Unavailable:      http.StatusServiceUnavailable,
	errs.GatewayTimeout:   http.StatusGatewayTimeout,
}

// Status returns the HTTP status of code; 500 for a code the table lacks.
func Status(code errs.Code) int {
	if s, ok := status[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// ErrorBody is the one JSON error shape of every service, the proxy's own
// errors included: {"error":{"code":"not_found","message":"..."}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code    errs.Code `json:"code"`
	Message string    `json:"message"`
	Field   string    `json:"field,omitempty"`
}

// WriteError answers e as JSON with its code's status.
func WriteError(w http.ResponseWriter, e *errs.Error) {
	WriteJSON(w, Status(e.Code), ErrorBody{Error: ErrorDetail{Code: e.Code, Message: e.Message, Field: e.Field}})
}

// WriteJSON writes v as the JSON response body with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Classifier is an adapter's classification of its own domain errors: nil
// for an error it does not know.
type Classifier func(err error) *errs.Error

// internal is what a client learns of anything unclassified; the details
// go to the log only.
var internal = errs.Error{Code: errs.Internal, Message: "internal error"}

// Classify returns what a client may be told about err: domain's answer
// first, then the errors every adapter shares (an errs.Error already
// classified, request decoding, field rules), else "internal error".
func Classify(err error, domain Classifier) *errs.Error {
	if domain != nil {
		if e := domain(err); e != nil {
			return e
		}
	}
	var (
		classified *errs.Error
		field      *errs.FieldError
	)
	switch {
	case errors.As(err, &classified):
		return classified
	case errors.As(err, &field):
		return &errs.Error{Code: errs.Validation, Message: field.Error(), Field: field.Field}
	case errors.Is(err, ErrSyntax):
		return &errs.Error{Code: errs.InvalidJSON, Message: err.Error()}
	case errors.Is(err, ErrIncompleteBody):
		return &errs.Error{Code: errs.IncompleteBody, Message: ErrIncompleteBody.Error()}
	case errors.Is(err, ErrTooLarge):
		return &errs.Error{Code: errs.TooLarge, Message: err.Error()}
	case errors.Is(err, ErrMediaType):
		return &errs.Error{Code: errs.MediaType, Message: err.Error()}
	}
	e := internal
	return &e
}

// ClientGone reports whether err only says that the client of r went away:
// nobody reads an answer, so there is nothing to write, only to log.
func ClientGone(r *http.Request, err error) bool {
	return r.Context().Err() != nil && errors.Is(err, context.Canceled)
}
