package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"moviestream/pkg/errs"
)

// MaxBodyBytes is the largest request body the services accept (1 MiB).
const MaxBodyBytes = 1 << 20

// Sentinel errors of request decoding; handlers map them to HTTP statuses.
var (
	ErrMediaType = errors.New("content type must be application/json")
	ErrTooLarge  = errors.New("request body too large")
	ErrSyntax    = errors.New("malformed JSON")
	// ErrIncompleteBody is the client's fault: its body ended before the
	// length it announced, or did not arrive within the server's read
	// timeout.
	ErrIncompleteBody = errors.New("request body incomplete: it ended early or arrived too slowly")
)

// RequireJSON reports ErrMediaType unless the request declares a JSON body
// (application/json or any application/*+json, parameters allowed).
func RequireJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return fmt.Errorf("%w (no Content-Type header)", ErrMediaType)
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !(mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))) {
		return fmt.Errorf("%w (got %q)", ErrMediaType, ct)
	}
	return nil
}

// ReadBody reads at most limit bytes of the request body; more is
// ErrTooLarge, and a body that cannot be read to its end (cut short, too
// slow) is ErrIncompleteBody.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, fmt.Errorf("%w: limit is %d bytes", ErrTooLarge, limit)
		}
		return nil, fmt.Errorf("%w: %w", ErrIncompleteBody, err)
	}
	return body, nil
}

// DecodeObject unmarshals a JSON object into dst. It rejects anything but a
// single object, and turns encoding/json's type errors into a FieldError
// that names the field.
func DecodeObject(body []byte, dst any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return fmt.Errorf("%w: empty body, expected a JSON object", ErrSyntax)
	}
	if trimmed[0] != '{' {
		return fmt.Errorf("%w: expected a JSON object", ErrSyntax)
	}
	// encoding/json would silently store U+FFFD for invalid bytes.
	if !utf8.Valid(trimmed) {
		return fmt.Errorf("%w: body is not valid UTF-8", ErrSyntax)
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(dst); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return &errs.FieldError{Field: typeErr.Field, Reason: "must be a JSON " + jsonKind(typeErr.Type.Kind().String())}
		}
		return fmt.Errorf("%w: %s", ErrSyntax, describeSyntax(err))
	}
	// dec.More misses a stray '}' or ']': compare offsets instead.
	if dec.InputOffset() != int64(len(trimmed)) {
		return fmt.Errorf("%w: unexpected data after the JSON object", ErrSyntax)
	}
	return nil
}

// describeSyntax keeps the useful part of encoding/json's message without
// echoing Go type names to clients.
func describeSyntax(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("%s (at byte %d)", syn.Error(), syn.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of JSON input"
	}
	return "invalid JSON object"
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "number"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	default:
		return "object"
	}
}
