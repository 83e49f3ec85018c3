//go:build docs

// Package apidocs checks the gateway's interactive API documentation the way
// a person sees it: headless Chromium (Debian's chromium package) loads
// /docs from the running stack, every operation of openapi.yaml must be
// listed in the rendered page, and a screenshot goes to build/docs.png.
//
// It runs with `make docs-test`, against a stack that is already up.
package apidocs

import (
	"bytes"
	"context"
	"fmt"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"moviestream/pkg/config"
)

// operation is one documented method and path.
type operation struct {
	tag, id, method, path string
}

func TestDocsPageListsEveryOperation(t *testing.T) {
	if err := config.Load(); err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(config.FindEnvFile())
	var env config.Reader
	url := fmt.Sprintf("http://127.0.0.1:%d/docs", env.Int("GATEWAY_PORT"))
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	ops := documentedOperations(t, filepath.Join(root, "openapi.yaml"))

	dom, console := chromium(t, "--dump-dom", url)
	if !strings.Contains(dom, `class="title"`) || !strings.Contains(dom, "moviestream gateway API") {
		t.Errorf("the page has no rendered title; is %s Swagger UI? DOM:\n%.2000s", url, dom)
	}
	for _, op := range ops {
		block, ok := opblock(dom, "operations-"+op.tag+"-"+op.id)
		if !ok {
			t.Errorf("%s %s (%s) is not listed on the page", op.method, op.path, op.id)
			continue
		}
		for _, want := range []string{
			`opblock-summary-method">` + op.method + `<`,
			`data-path="` + op.path + `"`,
		} {
			if !strings.Contains(block, want) {
				t.Errorf("%s: the listed operation lacks %s", op.id, want)
			}
		}
	}
	// A blocked or missing script, style or document shows in the console:
	// the page must need nothing but the gateway.
	for _, line := range strings.Split(console, "\n") {
		l := strings.ToLower(line)
		if strings.Contains(line, ":CONSOLE") && (strings.Contains(l, "refused to") ||
			strings.Contains(l, "failed to load") || strings.Contains(l, "error")) {
			t.Errorf("browser console: %s", line)
		}
	}

	shot := filepath.Join(root, "build", "docs.png")
	if err := os.MkdirAll(filepath.Dir(shot), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(shot)
	chromium(t, "--screenshot="+shot, "--window-size=1280,2000", "--hide-scrollbars", url)
	checkScreenshot(t, shot)
	t.Logf("%d operations checked; screenshot %s", len(ops), shot)
}

// documentedOperations lists the operations of the OpenAPI document, each
// under its first tag as Swagger UI groups them.
func documentedOperations(t *testing.T, path string) []operation {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	var ops []operation
	for p, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if len(op.Tags) == 0 || op.OperationID == "" {
				t.Fatalf("%s %s has no tag or operationId", method, p)
			}
			ops = append(ops, operation{tag: op.Tags[0], id: op.OperationID, method: method, path: p})
		}
	}
	if len(ops) == 0 {
		t.Fatalf("%s documents no operation", path)
	}
	return ops
}

// opblock returns the HTML of the operation block with the given element id:
// from the id to the next operation's id.
func opblock(dom, id string) (string, bool) {
	i := strings.Index(dom, `id="`+id+`"`)
	if i < 0 {
		return "", false
	}
	block := dom[i+len(id)+5:]
	if j := strings.Index(block, `id="operations-`); j >= 0 {
		block = block[:j]
	}
	return block, true
}

// chromium runs headless Chromium with a fresh profile and no background
// traffic, letting the page's scripts run for up to 15 s of virtual time.
// It returns standard output and the browser's log (console included).
func chromium(t *testing.T, args ...string) (stdout, log string) {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (Debian package chromium; scripts/test-setup.sh installs it): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--no-first-run", "--no-default-browser-check",
		"--user-data-dir=" + t.TempDir(), "--enable-logging=stderr", "--v=0",
		"--virtual-time-budget=15000",
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), errOut.String()
}

// checkScreenshot fails unless the file is a PNG showing the page: the
// colours Swagger UI gives GET, POST, PUT and DELETE must all be there.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	want := map[string]color.RGBA{
		"GET":    {0x61, 0xaf, 0xfe, 0xff},
		"POST":   {0x49, 0xcc, 0x90, 0xff},
		"PUT":    {0xfc, 0xa1, 0x30, 0xff},
		"DELETE": {0xf9, 0x3e, 0x3e, 0xff},
	}
	found := map[string]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			for method, w := range want {
				if near(c, w) {
					found[method]++
				}
			}
		}
	}
	for method := range want {
		if found[method] < 100 {
			t.Errorf("screenshot %s: %d pixels of the %s colour; the operations are not visible", path, found[method], method)
		}
	}
	if b.Dx() < 1000 || b.Dy() < 1000 {
		t.Errorf("screenshot %s is %v, want the full window", path, b.Size())
	}
}

func near(a, b color.RGBA) bool {
	d := func(x, y uint8) int {
		if x > y {
			return int(x - y)
		}
		return int(y - x)
	}
	return d(a.R, b.R) <= 6 && d(a.G, b.G) <= 6 && d(a.B, b.B) <= 6
}
