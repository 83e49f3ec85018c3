package loadtest

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Verdict is a row's outcome.
type Verdict string

// The outcomes: the target is met, missed, or the row could not be
// measured (an error, printed in the row's note).
const (
	Pass  Verdict = "PASS"
	Fail  Verdict = "FAIL"
	Error Verdict = "ERROR"
)

// Row is one line of the table.
type Row struct {
	Name      string
	Project   string // the project's figure
	Reference string // the reference measured in the same run, or "-"
	Ratio     string // project / reference, or "-"
	Target    string
	Verdict   Verdict
	Note      string // what else the reader needs: errors, counts
}

// ErrorRow is a row that could not be measured.
func ErrorRow(name, target string, err error) Row {
	return Row{Name: name, Project: "-", Reference: "-", Ratio: "-", Target: target, Verdict: Error, Note: err.Error()}
}

// verdict is Pass when ok.
func verdict(ok bool) Verdict {
	if ok {
		return Pass
	}
	return Fail
}

// Ratio formats a/b as "0.87x"; "-" when b is zero.
func Ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// PerSecond formats a rate: "12,345/s".
func PerSecond(v float64) string { return Thousands(int64(v+0.5)) + "/s" }

// Millis formats a duration in milliseconds with one decimal.
func Millis(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// Seconds formats a duration in seconds with two decimals.
func Seconds(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// MiB formats a byte count in MiB with one decimal.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// Thousands formats n with a comma every three digits.
func Thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Render prints the rows as one aligned table, then each row's note.
func Render(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "row\tproject\treference (same run)\tratio\ttarget\tresult")
	fmt.Fprintln(tw, "---\t-------\t-------------------\t-----\t------\t------")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Project, r.Reference, r.Ratio, r.Target, r.Verdict)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("loadtest: print table: %w", err)
	}
	var notes []string
	for _, r := range rows {
		if r.Note != "" {
			notes = append(notes, fmt.Sprintf("  %s: %s", r.Name, r.Note))
		}
	}
	if len(notes) > 0 {
		if _, err := fmt.Fprintf(w, "notes:\n%s\n", strings.Join(notes, "\n")); err != nil {
			return fmt.Errorf("loadtest: print notes: %w", err)
		}
	}
	return nil
}

// Failed reports whether any row missed its target or was not measured.
func Failed(rows []Row) bool {
	for _, r := range rows {
		if r.Verdict != Pass {
			return true
		}
	}
	return false
}
