package movie_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"moviestream/pkg/errs"
	"moviestream/services/inventory/internal/movie"
)

func ptr(s string) *string { return &s }

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		in        movie.Input
		wantTitle string
		wantDesc  string
		wantField string // "" means success
	}{
		// Successes and normalisation.
		{name: "title only, description defaults to empty", in: movie.Input{Title: ptr("Alien")}, wantTitle: "Alien"},
		{name: "title and description", in: movie.Input{Title: ptr("Alien"), Description: ptr("In space.")}, wantTitle: "Alien", wantDesc: "In space."},
		{name: "explicit empty description", in: movie.Input{Title: ptr("Alien"), Description: ptr("")}, wantTitle: "Alien"},
		{name: "title trimmed of spaces", in: movie.Input{Title: ptr("  Alien  ")}, wantTitle: "Alien"},
		{name: "title trimmed of tabs and newlines", in: movie.Input{Title: ptr("\t\n Alien \r\n")}, wantTitle: "Alien"},
		{name: "title trimmed of unicode spaces", in: movie.Input{Title: ptr("\u00a0\u2003Alien\u3000")}, wantTitle: "Alien"},
		{name: "inner spaces kept", in: movie.Input{Title: ptr("The  Thing")}, wantTitle: "The  Thing"},
		{name: "description not trimmed", in: movie.Input{Title: ptr("a"), Description: ptr("  x  ")}, wantTitle: "a", wantDesc: "  x  "},
		{name: "description may hold line breaks and tabs", in: movie.Input{Title: ptr("a"), Description: ptr("line 1\nline 2\tend")}, wantTitle: "a", wantDesc: "line 1\nline 2\tend"},
		{name: "one character title", in: movie.Input{Title: ptr("x")}, wantTitle: "x"},
		{name: "255 ascii title", in: movie.Input{Title: ptr(strings.Repeat("a", 255))}, wantTitle: strings.Repeat("a", 255)},
		{name: "255 two-byte characters (510 bytes)", in: movie.Input{Title: ptr(strings.Repeat("é", 255))}, wantTitle: strings.Repeat("é", 255)},
		{name: "255 four-byte characters", in: movie.Input{Title: ptr(strings.Repeat("🎬", 255))}, wantTitle: strings.Repeat("🎬", 255)},
		{name: "255 characters after trimming", in: movie.Input{Title: ptr("   " + strings.Repeat("a", 255) + "   ")}, wantTitle: strings.Repeat("a", 255)},
		{name: "10000 character description", in: movie.Input{Title: ptr("a"), Description: ptr(strings.Repeat("d", 10_000))}, wantTitle: "a", wantDesc: strings.Repeat("d", 10_000)},
		{name: "10000 two-byte characters description", in: movie.Input{Title: ptr("a"), Description: ptr(strings.Repeat("é", 10_000))}, wantTitle: "a", wantDesc: strings.Repeat("é", 10_000)},
		{name: "unicode title", in: movie.Input{Title: ptr("Amélie — 天使")}, wantTitle: "Amélie — 天使"},

		// Title failures.
		{name: "missing title", in: movie.Input{}, wantField: "title"},
		{name: "missing title with description", in: movie.Input{Description: ptr("d")}, wantField: "title"},
		{name: "empty title", in: movie.Input{Title: ptr("")}, wantField: "title"},
		{name: "blank title", in: movie.Input{Title: ptr("   ")}, wantField: "title"},
		{name: "whitespace-only title", in: movie.Input{Title: ptr("\t\n\r\u00a0")}, wantField: "title"},
		{name: "256 ascii title", in: movie.Input{Title: ptr(strings.Repeat("a", 256))}, wantField: "title"},
		{name: "256 two-byte characters", in: movie.Input{Title: ptr(strings.Repeat("é", 256))}, wantField: "title"},
		{name: "NUL in title", in: movie.Input{Title: ptr("a\x00b")}, wantField: "title"},
		{name: "NUL-only title", in: movie.Input{Title: ptr("\x00")}, wantField: "title"},
		{name: "invalid UTF-8 title", in: movie.Input{Title: ptr("a\xffb")}, wantField: "title"},
		{name: "truncated UTF-8 sequence in title", in: movie.Input{Title: ptr("caf\xc3")}, wantField: "title"},
		{name: "surrogate encoded in UTF-8 title", in: movie.Input{Title: ptr("\xed\xa0\x80")}, wantField: "title"},
		{name: "line break inside title", in: movie.Input{Title: ptr("a\nb")}, wantField: "title"},
		{name: "tab inside title", in: movie.Input{Title: ptr("a\tb")}, wantField: "title"},
		{name: "escape character in title", in: movie.Input{Title: ptr("a\x1b[31mb")}, wantField: "title"},
		{name: "DEL in title", in: movie.Input{Title: ptr("a\x7fb")}, wantField: "title"},
		{name: "C1 control in title", in: movie.Input{Title: ptr("a\u0085b")}, wantField: "title"},

		// Description failures; the title is valid.
		{name: "10001 character description", in: movie.Input{Title: ptr("a"), Description: ptr(strings.Repeat("d", 10_001))}, wantField: "description"},
		{name: "10001 two-byte characters description", in: movie.Input{Title: ptr("a"), Description: ptr(strings.Repeat("é", 10_001))}, wantField: "description"},
		{name: "NUL in description", in: movie.Input{Title: ptr("a"), Description: ptr("x\x00y")}, wantField: "description"},
		{name: "invalid UTF-8 description", in: movie.Input{Title: ptr("a"), Description: ptr("\xc3\x28")}, wantField: "description"},

		// The title is checked first.
		{name: "both invalid reports title", in: movie.Input{Title: ptr(""), Description: ptr("\x00")}, wantField: "title"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			title, desc, err := tc.in.Validate()
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("Validate() error = %v, want nil", err)
				}
				if diff := cmp.Diff(tc.wantTitle, title); diff != "" {
					t.Errorf("title mismatch (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tc.wantDesc, desc); diff != "" {
					t.Errorf("description mismatch (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = %q, %q, nil; want an error on %s", title, desc, tc.wantField)
			}
			if !errors.Is(err, movie.ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			var fe *errs.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *errs.FieldError", err, err)
			}
			if fe.Field != tc.wantField {
				t.Errorf("FieldError.Field = %q, want %q (error %v)", fe.Field, tc.wantField, err)
			}
			if fe.Reason == "" {
				t.Errorf("FieldError.Reason is empty")
			}
			if title != "" || desc != "" {
				t.Errorf("on error Validate returned %q, %q; want empty values", title, desc)
			}
		})
	}
}

// TestValidateMissingVersusEmpty pins that the client can tell a missing
// title from an empty one.
func TestValidateMissingVersusEmpty(t *testing.T) {
	t.Parallel()
	_, _, errMissing := movie.Input{}.Validate()
	_, _, errEmpty := movie.Input{Title: ptr("")}.Validate()
	if errMissing == nil || errEmpty == nil {
		t.Fatalf("errors = %v, %v; want both non-nil", errMissing, errEmpty)
	}
	if errMissing.Error() == errEmpty.Error() {
		t.Errorf("missing and empty title give the same message %q", errMissing)
	}
}

func TestFilterValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		f         movie.Filter
		wantField string // "" means valid
	}{
		{name: "no filter", f: movie.Filter{}},
		{name: "search only", f: movie.Filter{TitleContains: "100% _\\"}},
		{name: "smallest page", f: movie.Filter{Limit: 1}},
		{name: "largest page", f: movie.Filter{Limit: movie.MaxPageSize}},
		{name: "after the largest id", f: movie.Filter{AfterID: 1<<63 - 1, Limit: 5}},
		{name: "after_id without limit", f: movie.Filter{AfterID: 7}},
		{name: "page too large", f: movie.Filter{Limit: movie.MaxPageSize + 1}, wantField: "limit"},
		{name: "negative limit", f: movie.Filter{Limit: -1}, wantField: "limit"},
		{name: "negative after_id", f: movie.Filter{AfterID: -1, Limit: 5}, wantField: "after_id"},
		{name: "invalid UTF-8 search", f: movie.Filter{TitleContains: "\xff", Limit: 5}, wantField: "title"},
		{name: "NUL in search", f: movie.Filter{TitleContains: "a\x00"}, wantField: "title"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.f.Validate()
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", tc.f, err)
				}
				return
			}
			var fe *errs.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.wantField || !errors.Is(err, movie.ErrInvalid) {
				t.Fatalf("Validate(%+v) = %v, want an ErrInvalid field error on %q", tc.f, err, tc.wantField)
			}
		})
	}
}

func TestErrorsMatchSentinels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		err      error
		want     error
		notWant  []error
		wantText string
	}{
		{name: "field error", err: missingTitle(), want: movie.ErrInvalid,
			notWant: []error{movie.ErrNotFound, movie.ErrUnavailable}, wantText: "title: is required"},
		{name: "not found error", err: &movie.NotFoundError{ID: 42}, want: movie.ErrNotFound,
			notWant: []error{movie.ErrInvalid, movie.ErrUnavailable}, wantText: "movie 42 not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wrapped := errors.Join(errors.New("context"), tc.err)
			if !errors.Is(wrapped, tc.want) {
				t.Errorf("errors.Is(%v, %v) = false", wrapped, tc.want)
			}
			for _, nw := range tc.notWant {
				if errors.Is(wrapped, nw) {
					t.Errorf("errors.Is(%v, %v) = true", wrapped, nw)
				}
			}
			if got := tc.err.Error(); got != tc.wantText {
				t.Errorf("Error() = %q, want %q", got, tc.wantText)
			}
		})
	}
}

// FuzzValidate checks Validate's invariants on arbitrary input: it never
// panics; what it accepts is a clean title and description; what it refuses
// matches ErrInvalid.
func FuzzValidate(f *testing.F) {
	seeds := []struct {
		title, desc       string
		hasTitle, hasDesc bool
	}{
		{"Alien", "In space.", true, true},
		{"  Alien  ", "", true, false},
		{"", "", true, true},
		{"", "", false, false},
		{"   ", "x", true, true},
		{"a\x00b", "", true, false},
		{"a", "x\x00", true, true},
		{"a\xffb", "", true, false},
		{"a", "\xc3\x28", true, true},
		{"caf\xc3", "", true, false},
		{"a\nb", "a\nb", true, true},
		{strings.Repeat("é", 255), "", true, false},
		{strings.Repeat("é", 256), "", true, false},
		{" " + strings.Repeat("a", 255) + "\u00a0", "", true, false},
		{"a", strings.Repeat("é", 10_001), true, true},
		{"\u00a0\u2003x\u3000", "", true, false},
		{"\u0085x", "", true, false},
		{"\xed\xa0\x80", "", true, false},
		{"\ufeffx", "", true, false},
		{"\u200bx\u200b", "", true, false},
	}
	for _, s := range seeds {
		f.Add(s.title, s.desc, s.hasTitle, s.hasDesc)
	}
	f.Fuzz(func(t *testing.T, title, desc string, hasTitle, hasDesc bool) {
		var in movie.Input
		if hasTitle {
			in.Title = &title
		}
		if hasDesc {
			in.Description = &desc
		}
		gotTitle, gotDesc, err := in.Validate()
		if err != nil {
			if !errors.Is(err, movie.ErrInvalid) {
				t.Fatalf("Validate(%q, %q) error %v does not match ErrInvalid", title, desc, err)
			}
			var fe *errs.FieldError
			if !errors.As(err, &fe) || (fe.Field != "title" && fe.Field != "description") {
				t.Fatalf("Validate(%q, %q) error %v does not name title or description", title, desc, err)
			}
			return
		}
		if !hasTitle {
			t.Fatalf("Validate accepted a missing title, returned %q", gotTitle)
		}
		n := utf8.RuneCountInString(gotTitle)
		switch {
		case n < 1 || n > movie.MaxTitleLen:
			t.Fatalf("title %q has %d characters, want 1..%d", gotTitle, n, movie.MaxTitleLen)
		case !utf8.ValidString(gotTitle):
			t.Fatalf("title %q is not valid UTF-8", gotTitle)
		case strings.ContainsRune(gotTitle, 0):
			t.Fatalf("title %q contains NUL", gotTitle)
		case strings.TrimSpace(gotTitle) != gotTitle:
			t.Fatalf("title %q is not trimmed", gotTitle)
		case gotTitle != strings.TrimSpace(title):
			t.Fatalf("title %q is not the trimmed input %q", gotTitle, title)
		}
		wantDesc := ""
		if hasDesc {
			wantDesc = desc
		}
		switch {
		case gotDesc != wantDesc:
			t.Fatalf("description = %q, want %q", gotDesc, wantDesc)
		case utf8.RuneCountInString(gotDesc) > movie.MaxDescriptionLen:
			t.Fatalf("description has %d characters, want at most %d", utf8.RuneCountInString(gotDesc), movie.MaxDescriptionLen)
		case !utf8.ValidString(gotDesc):
			t.Fatalf("description %q is not valid UTF-8", gotDesc)
		case strings.ContainsRune(gotDesc, 0):
			t.Fatalf("description %q contains NUL", gotDesc)
		}
	})
}

// missingTitle returns the field error Validate gives for a movie without
// a title.
func missingTitle() error {
	_, _, err := movie.Input{}.Validate()
	return err
}
