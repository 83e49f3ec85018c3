package httpapi

import (
	"fmt"
	"net/http"

	"github.com/klauspost/compress/gzhttp"
	"github.com/klauspost/compress/gzip"
)

// compressMinSize is the smallest answer worth compressing. Errors, single
// movies and short lists stay below it and go out as they are, with their
// Content-Length; a long list (a million movies is 79 MB of JSON) shrinks
// several times over.
const compressMinSize = 4 << 10

// compress gzips JSON answers of at least compressMinSize bytes for
// clients that send Accept-Encoding: gzip, and adds Vary: Accept-Encoding.
//
// klauspost/compress's gzhttp rather than a hand-written writer or
// gin-contrib/gzip: it decides on the size only after seeing that many
// bytes (so a small error body is never compressed, whatever route wrote
// it), it passes Flush through for a streamed list, it leaves alone answers
// that already carry a Content-Encoding, and its deflate is several times
// faster than compress/gzip's, which matters on the 2 cores that also run
// PostgreSQL. BestSpeed: the million-movie list still shrinks about 5x,
// at a fraction of the default level's CPU. zstd is left off: the API
// documents gzip, and every client has it.
func compress(h http.Handler) (http.Handler, error) {
	wrap, err := gzhttp.NewWrapper(
		gzhttp.MinSize(compressMinSize),
		gzhttp.CompressionLevel(gzip.BestSpeed),
		gzhttp.ContentTypes([]string{"application/json"}),
		gzhttp.EnableZstd(false),
	)
	if err != nil {
		return nil, fmt.Errorf("httpapi: compression: %w", err)
	}
	return wrap(h), nil
}
