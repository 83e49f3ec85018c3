// Package httpapi is the inventory's HTTP adapter: gin routes, request and
// response types, and the one function that maps domain errors to statuses.
package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"moviestream/pkg/errs"
	"moviestream/pkg/ginweb"
	"moviestream/pkg/web"
	"moviestream/services/inventory/internal/movie"
)

// movieRequest is the body of POST and PUT. Unknown fields are ignored so a
// client may send back a movie it fetched, id included.
type movieRequest struct {
	Title       *string `json:"title"`
	Description *string `json:"description"`
}

type movieResponse struct {
	ID          int64  `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description"`
}

func toResponse(m movie.Movie) movieResponse {
	return movieResponse{ID: m.ID, Title: m.Title, Description: m.Description}
}

type handler struct {
	store movie.Store
	log   *slog.Logger
}

// routes registers the movie API on e. Every route is registered with and
// without a trailing slash so both answer directly, never with a redirect.
func routes(e *gin.Engine, store movie.Store, log *slog.Logger) {
	h := handler{store: store, log: log}
	for _, base := range []string{"/api/movies", "/api/movies/"} {
		e.GET(base, h.list)
		e.POST(base, h.create)
		e.DELETE(base, h.deleteAll)
	}
	for _, item := range []string{"/api/movies/:id", "/api/movies/:id/"} {
		e.GET(item, h.get)
		e.PUT(item, h.update)
		e.DELETE(item, h.delete)
	}
}

// New returns the inventory's HTTP handler; opts (ginweb.WithMetrics) go
// to the engine. Answers are compressed as compress describes.
func New(store movie.Store, log *slog.Logger, trustedProxies []string, opts ...ginweb.Option) (http.Handler, error) {
	e, err := ginweb.NewEngine(log, trustedProxies, opts...)
	if err != nil {
		return nil, err
	}
	routes(e, store, log)
	return compress(e)
}

func (h handler) get(c *gin.Context) {
	id, err := parseID(c.Param("id"))
	if err != nil {
		ginweb.Fail(c, err, classify)
		return
	}
	m, err := h.store.Get(c.Request.Context(), id)
	if err != nil {
		ginweb.Fail(c, err, classify)
		return
	}
	c.JSON(http.StatusOK, toResponse(m))
}

func (h handler) create(c *gin.Context) {
	title, description, err := readMovie(c)
	if err != nil {
		ginweb.Fail(c, err, classify)
		return
	}
	m, err := h.store.Create(c.Request.Context(), title, description)
	if err != nil {
		ginweb.Fail(c, err, classify)
		return
	}
	c.Header("Location", fmt.Sprintf("/api/movies/%d", m.ID))
	c.JSON(http.StatusCreated, toResponse(m))
}

func (h handler) update(c *gin.Context) {
	id, err := parseID(c.Param("id"))
	if err != nil {
		ginweb.Fail(c, err, classify)
		return
	}
	title, description, err := readMovie(c)
	if err != nil {
		ginweb.Fail(c, err, classify)
		return
	}
	m, err := h.store.Update(c.Request.Context(), id, title, description)
	if err != nil {
		ginweb.Fail(c, err, classify)
		return
	}
	c.JSON(http.StatusOK, toResponse(m))
}

func (h handler) delete(c *gin.Context) {
	id, err := parseID(c.Param("id"))
	if err != nil {
		ginweb.Fail(c, err, classify)
		return
	}
	m, err := h.store.Delete(c.Request.Context(), id)
	if err != nil {
		ginweb.Fail(c, err, classify)
		return
	}
	c.JSON(http.StatusOK, toResponse(m))
}

func (h handler) deleteAll(c *gin.Context) {
	n, err := h.store.DeleteAll(c.Request.Context())
	if err != nil {
		ginweb.Fail(c, err, classify)
		return
	}
	c.JSON(http.StatusOK, gin.H{"deleted": n})
}

// readMovie checks the media type and size, decodes and validates the body.
func readMovie(c *gin.Context) (title, description string, err error) {
	if err := web.RequireJSON(c.Request); err != nil {
		return "", "", err
	}
	body, err := web.ReadBody(c.Writer, c.Request, web.MaxBodyBytes)
	if err != nil {
		return "", "", err
	}
	var req movieRequest
	if err := web.DecodeObject(body, &req); err != nil {
		return "", "", err
	}
	return movie.Input{Title: req.Title, Description: req.Description}.Validate()
}

// errInvalidID is returned for ids that are not positive 64-bit integers.
var errInvalidID = errors.New("invalid movie id")

// parseID accepts only plain decimal digits: no sign, no spaces.
func parseID(s string) (int64, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w %q: must be a positive integer", errInvalidID, s)
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%w %q: must be a positive integer up to %d", errInvalidID, s, int64(1<<63-1))
	}
	return id, nil
}

// classify is the inventory's part of the error table: what only the movie
// API knows. Field rules, decoding and media type errors are shared
// (web.Classify); anything else is "internal error" for the client and the
// full error for the log.
func classify(err error) *errs.Error {
	switch {
	case errors.Is(err, errInvalidID):
		return &errs.Error{Code: errs.InvalidID, Message: err.Error()}
	case errors.Is(err, movie.ErrNotFound):
		return &errs.Error{Code: errs.NotFound, Message: notFoundMessage(err)}
	case errors.Is(err, movie.ErrUnavailable):
		return &errs.Error{Code: errs.Unavailable, Message: "movie storage is unavailable, retry later"}
	}
	return nil
}

func notFoundMessage(err error) string {
	var nf *movie.NotFoundError
	if errors.As(err, &nf) {
		return nf.Error()
	}
	return "movie not found"
}
