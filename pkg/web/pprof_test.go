package web_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"moviestream/pkg/web"
)

// TestAdminMuxProfilesForLoopbackOnly: the admin listener is also bound to
// a VM's private address for Prometheus; profiles answer the host itself
// only, and anyone else gets 404 as if there were nothing.
func TestAdminMuxProfilesForLoopbackOnly(t *testing.T) {
	t.Parallel()
	mux := web.AdminMux(nil, prometheus.NewRegistry(), web.Metadata{})
	for _, tt := range []struct {
		remote, path string
		want         int
	}{
		{"127.0.0.1:40000", web.PprofPath, http.StatusOK},
		{"127.0.0.1:40000", web.PprofPath + "cmdline", http.StatusOK},
		{"127.0.0.1:40000", web.PprofPath + "heap?debug=1", http.StatusOK},
		{"[::1]:40000", web.PprofPath + "goroutine?debug=1", http.StatusOK},
		{"[::ffff:127.0.0.1]:40000", web.PprofPath, http.StatusOK},
		{"192.168.56.12:40000", web.PprofPath, http.StatusNotFound},
		{"192.168.56.12:40000", web.PprofPath + "cmdline", http.StatusNotFound},
		{"192.168.56.12:40000", web.PprofPath + "heap", http.StatusNotFound},
		{"10.0.0.1:40000", web.PprofPath + "profile?seconds=1", http.StatusNotFound},
		{"garbage", web.PprofPath, http.StatusNotFound},
	} {
		t.Run(tt.remote+tt.path, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, tt.path, nil)
			r.RemoteAddr = tt.remote
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Errorf("GET %s from %s: status %d, want %d", tt.path, tt.remote, w.Code, tt.want)
			}
		})
	}
}
