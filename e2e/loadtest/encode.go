package loadtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// movieJSON is one element of inventory's list, as inventory writes it.
type movieJSON struct {
	ID          int64  `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description"`
}

// movieEncoder writes a JSON array of movies one element at a time.
type movieEncoder struct {
	bw  *bufio.Writer
	enc *json.Encoder
	n   int64
}

func newMovieEncoder(w io.Writer) *movieEncoder {
	bw := bufio.NewWriterSize(w, 32<<10)
	return &movieEncoder{bw: bw, enc: json.NewEncoder(bw)}
}

func (e *movieEncoder) movie(id int64, title, desc string) error {
	sep := byte(',')
	if e.n == 0 {
		sep = '['
	}
	if err := e.bw.WriteByte(sep); err != nil {
		return fmt.Errorf("loadtest: encode movies: %w", err)
	}
	e.n++
	if err := e.enc.Encode(movieJSON{ID: id, Title: title, Description: desc}); err != nil {
		return fmt.Errorf("loadtest: encode movies: %w", err)
	}
	return nil
}

func (e *movieEncoder) close() error {
	end := "]"
	if e.n == 0 {
		end = "[]"
	}
	if _, err := e.bw.WriteString(end); err != nil {
		return fmt.Errorf("loadtest: encode movies: %w", err)
	}
	if err := e.bw.Flush(); err != nil {
		return fmt.Errorf("loadtest: encode movies: %w", err)
	}
	return nil
}

// objectCounter counts the movies in a JSON list as it streams past, by
// their `{"id":` openings (a title or description holding that text is
// escaped as {\"id\":, so it does not count), keeping the tail of each
// write for an opening split between two writes.
type objectCounter struct {
	n     int64
	bytes int64
	tail  []byte
}

var objectOpening = []byte(`{"id":`)

func (c *objectCounter) Write(p []byte) (int, error) {
	c.bytes += int64(len(p))
	buf := append(c.tail, p...)
	c.n += int64(bytes.Count(buf, objectOpening))
	// Keep fewer bytes than an opening, so none is counted twice.
	keep := min(len(buf), len(objectOpening)-1)
	c.tail = append(c.tail[:0], buf[len(buf)-keep:]...)
	return len(p), nil
}
