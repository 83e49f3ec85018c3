// Package movie is the inventory's domain: what a movie is, the rules its
// fields follow, the errors the rest of the service maps to responses, and
// the storage interface. It imports no web or database library.
package movie

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"moviestream/pkg/errs"
)

// Field limits, in characters (not bytes).
const (
	MaxTitleLen       = 255
	MaxDescriptionLen = 10_000
)

// Movie is a stored movie.
type Movie struct {
	ID          int64
	Title       string
	Description string
}

// Input is what a client may set on a movie. Title is a pointer so that a
// missing title and an empty one give different messages.
type Input struct {
	Title       *string
	Description *string
}

// Sentinel errors. Adapters match them with errors.Is.
var (
	ErrNotFound    = errors.New("movie not found")
	ErrInvalid     = errors.New("invalid movie")
	ErrUnavailable = errors.New("movie storage unavailable")
)

// invalid returns the error for a field that broke a rule; it matches
// ErrInvalid.
func invalid(field, reason string) error { return errs.Invalid(ErrInvalid, field, reason) }

// NotFoundError carries the id that was not found; it matches ErrNotFound.
type NotFoundError struct{ ID int64 }

func (e *NotFoundError) Error() string { return fmt.Sprintf("movie %d not found", e.ID) }

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// Validate applies the rules and returns the normalised fields: title
// trimmed of surrounding spaces, description "" when absent.
func (in Input) Validate() (title, description string, err error) {
	if in.Title == nil {
		return "", "", invalid("title", "is required")
	}
	title = strings.TrimSpace(*in.Title)
	if err := checkText("title", title, MaxTitleLen); err != nil {
		return "", "", err
	}
	if title == "" {
		return "", "", invalid("title", "must not be empty")
	}
	if in.Description != nil {
		description = *in.Description
	}
	if err := checkText("description", description, MaxDescriptionLen); err != nil {
		return "", "", err
	}
	return title, description, nil
}

// ValidateSearch checks a title search term. PostgreSQL cannot compare text
// with invalid UTF-8 or NUL, so such a term is the client's mistake (400),
// not a server error; any other term, however long, simply matches nothing.
func ValidateSearch(term string) error {
	switch {
	case !utf8.ValidString(term):
		return invalid("title", "must be valid UTF-8")
	case strings.ContainsRune(term, 0):
		return invalid("title", "must not contain NUL characters")
	}
	return nil
}

// checkText rejects what PostgreSQL's text type cannot store (invalid UTF-8,
// NUL) as well as over-long values, so client input never reaches the
// database as an error.
func checkText(field, s string, maxLen int) error {
	switch {
	case !utf8.ValidString(s):
		return invalid(field, "must be valid UTF-8")
	case strings.ContainsRune(s, 0):
		return invalid(field, "must not contain NUL characters")
	case utf8.RuneCountInString(s) > maxLen:
		return invalid(field, fmt.Sprintf("must be at most %d characters", maxLen))
	case field == "title" && strings.IndexFunc(s, unicode.IsControl) >= 0:
		return invalid(field, "must not contain control characters")
	}
	return nil
}

// MaxPageSize is the largest page a client may ask for with a limit. It
// bounds what one paged answer holds in memory (the page is read whole so
// that the next page's link can be sent before the body), and it is the
// size above which a client should rather take the streamed full list.
const MaxPageSize = 1000

// Filter selects the movies a listing visits; they always come in id order.
type Filter struct {
	// TitleContains keeps titles containing it, case-insensitively, taken
	// literally (% _ and \ are not wildcards); "" keeps every title.
	TitleContains string
	// AfterID keeps only ids above it: keyset pagination, which costs the
	// same on the last page as on the first, unlike an offset. 0 starts at
	// the beginning.
	AfterID int64
	// Limit stops after that many movies; 0 means no limit.
	Limit int
}

// Validate checks a filter as a client sent it: the title as
// ValidateSearch does, AfterID not negative, Limit 0 (none) or 1 to
// MaxPageSize.
func (f Filter) Validate() error {
	if err := ValidateSearch(f.TitleContains); err != nil {
		return err
	}
	if f.AfterID < 0 {
		return InvalidAfterID()
	}
	if f.Limit < 0 || f.Limit > MaxPageSize {
		return InvalidLimit()
	}
	return nil
}

// InvalidLimit is the error for a page size outside 1..MaxPageSize, or not
// a number at all.
func InvalidLimit() error {
	return invalid("limit", fmt.Sprintf("must be an integer from 1 to %d", MaxPageSize))
}

// InvalidAfterID is the error for an after_id that is not an integer from 0
// to the largest id.
func InvalidAfterID() error {
	return invalid("after_id", fmt.Sprintf("must be an integer from 0 to %d", int64(1<<63-1)))
}

// Store persists movies. Implementations wrap ErrUnavailable when the
// storage cannot be reached, and return a NotFoundError for unknown ids.
type Store interface {
	// Each calls fn with every movie f selects, in id order, as the
	// storage delivers them: memory does not grow with the number of
	// movies. It stops at the first error fn returns and returns that
	// error unchanged; cancelling ctx stops the query.
	Each(ctx context.Context, f Filter, fn func(Movie) error) error
	Get(ctx context.Context, id int64) (Movie, error)
	Create(ctx context.Context, title, description string) (Movie, error)
	Update(ctx context.Context, id int64, title, description string) (Movie, error)
	Delete(ctx context.Context, id int64) (Movie, error)
	DeleteAll(ctx context.Context) (int64, error)
}
