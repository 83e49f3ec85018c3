package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"moviestream/pkg/ginweb"
	"moviestream/pkg/web"
	"moviestream/services/inventory/internal/movie"
)

// listPath is the collection's path as clients see it, also through the
// gateway, which forwards /api/movies unchanged: the next-page link is
// path-absolute so that it resolves against whichever host answered.
const listPath = "/api/movies"

// streamBufferSize is how much of a streamed list is gathered before it
// is written: large enough that writes through gzip and net/http are few,
// small enough not to matter per request. An answer that fits in it
// (any short list or an error) is written in one piece.
const streamBufferSize = 32 << 10

// list answers GET /api/movies: the full list, streamed, or with limit one
// page of it with a link to the next.
func (h handler) list(c *gin.Context) {
	f, err := parseFilter(c)
	if err != nil {
		ginweb.Fail(c, err, classify)
		return
	}
	if f.Limit > 0 {
		h.page(c, f)
		return
	}
	h.stream(c, f)
}

// parseFilter reads title, limit and after_id from the query. An absent
// limit or after_id means none; a present one must be plain decimal digits
// in range (an empty one included), or the request is refused.
func parseFilter(c *gin.Context) (movie.Filter, error) {
	f := movie.Filter{TitleContains: c.Query("title")}
	if v, ok := c.GetQuery("limit"); ok {
		n, ok := parseDigits(v)
		if !ok || n < 1 || n > movie.MaxPageSize {
			return f, movie.InvalidLimit()
		}
		f.Limit = int(n)
	}
	if v, ok := c.GetQuery("after_id"); ok {
		n, ok := parseDigits(v)
		if !ok {
			return f, movie.InvalidAfterID()
		}
		f.AfterID = n
	}
	return f, f.Validate()
}

// parseDigits parses a non-negative int64 written in plain decimal digits:
// no sign, no spaces, no exponent.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// page answers one page of at most f.Limit movies. It asks the store for
// one movie more than the page holds: only when that one exists is there a
// next page, so a client following the links never gets an empty last
// page. The page (at most movie.MaxPageSize movies) is read whole, because
// the Link header must go out before the body.
func (h handler) page(c *gin.Context, f movie.Filter) {
	limit := f.Limit
	f.Limit++
	out := make([]movieResponse, 0, limit)
	more := false
	err := h.store.Each(c.Request.Context(), f, func(m movie.Movie) error {
		if len(out) == limit {
			more = true
			return nil
		}
		out = append(out, toResponse(m))
		return nil
	})
	if err != nil {
		ginweb.Fail(c, err, classify)
		return
	}
	if more {
		c.Header("Link", nextLink(f.TitleContains, limit, out[len(out)-1].ID))
	}
	c.JSON(http.StatusOK, out)
}

// nextLink is the Link header value (RFC 8288) pointing at the page after
// lastID, keeping the search term.
func nextLink(title string, limit int, lastID int64) string {
	target := fmt.Sprintf("%s?limit=%d&after_id=%d", listPath, limit, lastID)
	if title != "" {
		target += "&title=" + url.QueryEscape(title)
	}
	return "<" + target + `>; rel="next"`
}

// stream answers the whole list as one JSON array, written as the rows
// arrive: the same bytes c.JSON would write for the full slice, without
// ever holding it. Until the first bytes leave, a failure is still an
// ordinary error answer; after that the status is sent, so the connection
// is cut instead: the client sees a broken response (no final chunk, no
// closing bracket), never a valid-looking short list.
func (h handler) stream(c *gin.Context, f movie.Filter) {
	c.Header("Content-Type", "application/json; charset=utf-8")
	w := newArrayWriter(writeTimeoutPerChunk(c.Writer, c.Request))
	err := h.store.Each(c.Request.Context(), f, func(m movie.Movie) error {
		return w.write(toResponse(m))
	})
	if err == nil {
		err = w.close()
	}
	if err == nil {
		return
	}
	if !c.Writer.Written() {
		// Nothing has left yet: what was gathered is dropped (never
		// flushed) and the error answered as usual.
		ginweb.Fail(c, err, classify)
		return
	}
	// The middleware that logs failures does not see a panicking handler,
	// so this is the one log line.
	if c.Request.Context().Err() != nil {
		h.log.Debug("movie list cut: the client went away", "path", c.Request.URL.Path,
			"request_id", c.GetHeader(web.RequestIDHeader), "err", err)
	} else {
		h.log.Error("movie list cut after the response started", "path", c.Request.URL.Path,
			"request_id", c.GetHeader(web.RequestIDHeader), "err", err)
	}
	// net/http closes the connection without ending the body; the
	// gateway's ReverseProxy passes the cut on the same way.
	panic(http.ErrAbortHandler)
}

// chunkDeadline renews the connection's write deadline before each write,
// so that the server's WriteTimeout bounds how long one chunk of the list
// may take to leave, not the whole list: a million movies to a client
// reading at 1 MB/s take 90 s, far over the 60 s a single answer gets.
// A client that stops reading is still cut after WriteTimeout.
type chunkDeadline struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

// writeTimeoutPerChunk returns w itself when r's server has no
// WriteTimeout (nothing to renew), else w behind a chunkDeadline.
func writeTimeoutPerChunk(w http.ResponseWriter, r *http.Request) io.Writer {
	srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server)
	if !ok || srv.WriteTimeout <= 0 {
		return w
	}
	return &chunkDeadline{w: w, rc: http.NewResponseController(w), timeout: srv.WriteTimeout}
}

func (d *chunkDeadline) Write(p []byte) (int, error) {
	// ErrNotSupported (a writer that cannot reach the connection) leaves
	// the server's own deadline in force: nothing worse than before.
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.w.Write(p)
}

// arrayWriter writes a JSON array one element at a time through a buffer.
type arrayWriter struct {
	bw   *bufio.Writer
	enc  *json.Encoder
	elem bytes.Buffer
	n    int
}

func newArrayWriter(w io.Writer) *arrayWriter {
	a := &arrayWriter{bw: bufio.NewWriterSize(w, streamBufferSize)}
	a.enc = json.NewEncoder(&a.elem)
	return a
}

// errWrite marks a failure to write the answer, as opposed to the store's.
var errWrite = errors.New("write movie list")

// write adds v. The encoder escapes exactly as json.Marshal (which c.JSON
// uses) does; it only adds a newline, left out here, so the bytes are the
// same as for the whole slice marshalled at once.
func (a *arrayWriter) write(v movieResponse) error {
	a.elem.Reset()
	if err := a.enc.Encode(v); err != nil {
		return fmt.Errorf("%w: encode: %w", errWrite, err)
	}
	sep := byte(',')
	if a.n == 0 {
		sep = '['
	}
	a.n++
	_ = a.bw.WriteByte(sep)
	if _, err := a.bw.Write(bytes.TrimSuffix(a.elem.Bytes(), []byte("\n"))); err != nil {
		return fmt.Errorf("%w: %w", errWrite, err)
	}
	return nil
}

// close ends the array ([] when empty) and flushes.
func (a *arrayWriter) close() error {
	if a.n == 0 {
		_ = a.bw.WriteByte('[')
	}
	_ = a.bw.WriteByte(']')
	if err := a.bw.Flush(); err != nil {
		return fmt.Errorf("%w: %w", errWrite, err)
	}
	return nil
}
