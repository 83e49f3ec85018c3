package web

import (
	"net/http"
	"runtime/debug"
)

// Paths of the metadata endpoint, the same in every service: the current
// API version's and the versioned one.
const (
	MetadataPath   = "/metadata"
	MetadataV1Path = "/1.0/metadata"
)

// APIVersion is the version of the services' HTTP API.
const APIVersion = "1.0"

// Metadata describes a running service: GET /metadata. Every field is a
// string.
type Metadata struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	Description string `json:"description"`
	Repository  string `json:"repository"`
	APIVersion  string `json:"api_version"`
	// Auth is "none", or "api-key" when writes need an API key.
	Auth string `json:"auth"`
}

// NewMetadata describes the running binary: version and repository come
// from its build information, never from a constant someone must edit.
func NewMetadata(name, description, auth string) Metadata {
	info, _ := debug.ReadBuildInfo()
	return Metadata{
		Name: name, Description: description, Auth: auth, APIVersion: APIVersion,
		Version: BuildVersion(info), Repository: buildRepository(info),
	}
}

// BuildVersion returns the main module's version as the go command stamped
// it (a tag, or a pseudo-version with +dirty), else the VCS revision (with
// -dirty when the tree had changes), else "unknown".
func BuildVersion(info *debug.BuildInfo) string {
	if info == nil {
		return "unknown"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	switch {
	case rev == "":
		return "unknown"
	case modified == "true":
		return rev + "-dirty"
	}
	return rev
}

func buildRepository(info *debug.BuildInfo) string {
	if info == nil || info.Main.Path == "" {
		return "unknown"
	}
	return info.Main.Path
}

// MetadataHandler answers m as JSON.
func MetadataHandler(m Metadata) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { WriteJSON(w, http.StatusOK, m) }
}

// HandleMetadata serves m on mux at MetadataPath and MetadataV1Path.
func HandleMetadata(mux *http.ServeMux, m Metadata) {
	h := MetadataHandler(m)
	mux.Handle("GET "+MetadataPath, h)
	mux.Handle("GET "+MetadataV1Path, h)
}
