package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"

	"github.com/gin-gonic/gin"

	"moviestream/pkg/errs"
	"moviestream/pkg/ginweb"
)

// APIKeyHeader carries the client's API key.
const APIKeyHeader = "X-API-Key"

// apiKeyKey is APIKeyHeader as http.Header stores it: looked up and
// deleted on every request under /api, without converting the name each
// time.
var apiKeyKey = http.CanonicalHeaderKey(APIKeyHeader)

// requireAPIKey lets GET, HEAD and OPTIONS through and, when keys is not
// empty, answers any other method 401 unless APIKeyHeader holds one of
// keys. An empty header is no key. The comparison takes the same time
// whichever key matches, or how much of it: both sides are hashed to the
// same length, and every key is compared. The header never reaches the
// adapters behind (inventory has no use for the gateway's credentials), and
// no key is ever logged.
func requireAPIKey(keys []string) gin.HandlerFunc {
	sums := make([][sha256.Size]byte, 0, len(keys))
	for _, k := range keys {
		if k != "" {
			sums = append(sums, sha256.Sum256([]byte(k)))
		}
	}
	return func(c *gin.Context) {
		var key string
		if v := c.Request.Header[apiKeyKey]; len(v) > 0 {
			key = v[0]
		}
		delete(c.Request.Header, apiKeyKey)
		if len(sums) == 0 || isRead(c.Request.Method) {
			c.Next()
			return
		}
		if key == "" {
			ginweb.Fail(c, errs.New(errs.Unauthorized, "missing %s header: %s requests need an API key", APIKeyHeader, c.Request.Method), nil)
			return
		}
		got := sha256.Sum256([]byte(key))
		match := 0
		for i := range sums {
			match |= subtle.ConstantTimeCompare(got[:], sums[i][:])
		}
		if match != 1 {
			ginweb.Fail(c, errs.New(errs.Unauthorized, "invalid %s header", APIKeyHeader), nil)
			return
		}
		c.Next()
	}
}

func isRead(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}
