package web_test

import (
	"encoding/json"
	"net/http/httptest"
	"runtime/debug"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"moviestream/pkg/web"
)

func TestBuildVersion(t *testing.T) {
	t.Parallel()
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tt := range []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"no build info", nil, "unknown"},
		{"module version", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: vcs("abc", "false")}, "v1.2.3"},
		{"devel, clean tree", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("abc123", "false")}, "abc123"},
		{"devel, dirty tree", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("abc123", "true")}, "abc123-dirty"},
		{"neither", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "unknown"},
	} {
		if got := web.BuildVersion(tt.info); got != tt.want {
			t.Errorf("%s: BuildVersion = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestAdminMuxMetadata: both metadata paths answer one JSON object whose
// fields are all strings.
func TestAdminMuxMetadata(t *testing.T) {
	t.Parallel()
	meta := web.NewMetadata("billing", "writes orders", "none")
	mux := web.AdminMux(nil, prometheus.NewRegistry(), meta)
	for _, path := range []string{web.MetadataPath, web.MetadataV1Path} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 {
			t.Fatalf("GET %s = %d", path, rec.Code)
		}
		var got map[string]string // fails on any non-string field
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, rec.Body)
		}
		want := map[string]string{
			"name": "billing", "version": meta.Version, "description": "writes orders",
			"repository": meta.Repository, "api_version": "1.0", "auth": "none",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GET %s (-want +got):\n%s", path, diff)
		}
		if got["version"] == "" || got["repository"] == "" {
			t.Errorf("GET %s: empty version or repository: %v", path, got)
		}
	}
}
