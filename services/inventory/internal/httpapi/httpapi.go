// Package httpapi is the inventory's HTTP adapter: gin routes, request and
// response types, and the one function that maps domain errors to statuses.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

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
}

// Routes registers the movie API on e. Every route is registered with and
// without a trailing slash so both answer directly, never with a redirect.
func Routes(e *gin.Engine, store movie.Store) {
	h := handler{store: store}
	e.GET("/health", web.Health)
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

// New returns the inventory's HTTP handler.
func New(store movie.Store, log *slog.Logger, trustedProxies []string) (http.Handler, error) {
	e, err := web.NewEngine(log, trustedProxies)
	if err != nil {
		return nil, err
	}
	Routes(e, store)
	return e, nil
}

func (h handler) list(c *gin.Context) {
	term := c.Query("title")
	if err := movie.ValidateSearch(term); err != nil {
		respondError(c, err)
		return
	}
	movies, err := h.store.List(c.Request.Context(), term)
	if err != nil {
		respondError(c, err)
		return
	}
	out := make([]movieResponse, len(movies))
	for i, m := range movies {
		out[i] = toResponse(m)
	}
	c.JSON(http.StatusOK, out)
}

func (h handler) get(c *gin.Context) {
	id, err := parseID(c.Param("id"))
	if err != nil {
		respondError(c, err)
		return
	}
	m, err := h.store.Get(c.Request.Context(), id)
	if err != nil {
		respondError(c, err)
		return
	}
	c.JSON(http.StatusOK, toResponse(m))
}

func (h handler) create(c *gin.Context) {
	title, description, err := readMovie(c)
	if err != nil {
		respondError(c, err)
		return
	}
	m, err := h.store.Create(c.Request.Context(), title, description)
	if err != nil {
		respondError(c, err)
		return
	}
	c.Header("Location", fmt.Sprintf("/api/movies/%d", m.ID))
	c.JSON(http.StatusCreated, toResponse(m))
}

func (h handler) update(c *gin.Context) {
	id, err := parseID(c.Param("id"))
	if err != nil {
		respondError(c, err)
		return
	}
	title, description, err := readMovie(c)
	if err != nil {
		respondError(c, err)
		return
	}
	m, err := h.store.Update(c.Request.Context(), id, title, description)
	if err != nil {
		respondError(c, err)
		return
	}
	c.JSON(http.StatusOK, toResponse(m))
}

func (h handler) delete(c *gin.Context) {
	id, err := parseID(c.Param("id"))
	if err != nil {
		respondError(c, err)
		return
	}
	m, err := h.store.Delete(c.Request.Context(), id)
	if err != nil {
		respondError(c, err)
		return
	}
	c.JSON(http.StatusOK, toResponse(m))
}

func (h handler) deleteAll(c *gin.Context) {
	n, err := h.store.DeleteAll(c.Request.Context())
	if err != nil {
		respondError(c, err)
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

// respondError is the one place that maps errors to HTTP answers. Client
// mistakes are explained; anything else is "internal error" for the client
// and the full error for the log.
func respondError(c *gin.Context, err error) {
	var (
		status = http.StatusInternalServerError
		detail = web.ErrorDetail{Code: web.CodeInternal, Message: "internal error"}
		field  *movie.FieldError
		wfield *web.FieldError
	)
	switch {
	case errors.As(err, &field):
		status, detail = http.StatusBadRequest, web.ErrorDetail{Code: web.CodeValidation, Message: field.Error(), Field: field.Field}
	case errors.As(err, &wfield):
		status, detail = http.StatusBadRequest, web.ErrorDetail{Code: web.CodeValidation, Message: wfield.Error(), Field: wfield.Field}
	case errors.Is(err, web.ErrSyntax):
		status, detail = http.StatusBadRequest, web.ErrorDetail{Code: web.CodeInvalidJSON, Message: err.Error()}
	case errors.Is(err, errInvalidID):
		status, detail = http.StatusBadRequest, web.ErrorDetail{Code: web.CodeInvalidID, Message: err.Error()}
	case errors.Is(err, web.ErrTooLarge):
		status, detail = http.StatusRequestEntityTooLarge, web.ErrorDetail{Code: web.CodeTooLarge, Message: err.Error()}
	case errors.Is(err, web.ErrMediaType):
		status, detail = http.StatusUnsupportedMediaType, web.ErrorDetail{Code: web.CodeMediaType, Message: err.Error()}
	case errors.Is(err, movie.ErrNotFound):
		status, detail = http.StatusNotFound, web.ErrorDetail{Code: web.CodeNotFound, Message: notFoundMessage(err)}
	case errors.Is(err, movie.ErrUnavailable):
		status, detail = http.StatusServiceUnavailable, web.ErrorDetail{Code: web.CodeUnavailable, Message: "movie storage is unavailable, retry later"}
	case errors.Is(err, context.Canceled) && c.Request.Context().Err() != nil:
		// The client went away; nobody reads an answer. Log only.
		_ = c.Error(err)
		c.Abort()
		return
	}
	_ = c.Error(err)
	web.WriteError(c.Writer, status, detail)
	c.Abort()
}

func notFoundMessage(err error) string {
	var nf *movie.NotFoundError
	if errors.As(err, &nf) {
		return nf.Error()
	}
	return "movie not found"
}
