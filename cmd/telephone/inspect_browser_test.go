package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
)

// chromiumPath finds headless Chromium (Debian package chromium). Without it the browser
// test skips, except under CI=true, where it fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("Chromium is not installed (apt-get install chromium); CI=true requires the browser test")
	}
	t.Skip("Chromium is not installed (apt-get install chromium): the inspector's browser test needs it")
	return ""
}

// newBrowser starts headless Chromium with a fresh profile; flags suit running as root in a
// container without network access.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1500, 1000),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	return ctx
}

// TestInspectorInBrowser runs `telephone run` with INSPECT_ADDR against an in-memory
// Plugboard and drives the inspector page in headless Chromium while requests cross the
// tunnel: the list updates live, the details show the right headers and bodies with secrets
// masked, the filter hides rows, and replay reaches the backend directly. It saves a
// screenshot in the test's artifact directory (go test -artifacts keeps it).
func TestInspectorInBrowser(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t)
	var hits atomic.Int64
	var mu sync.Mutex
	var lastAuth string
	backend := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws/chat" {
			wsEcho(w, r)
			return
		}
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		lastAuth = r.Header.Get("Authorization")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "session=server-cookie-value; Path=/")
		w.Header().Set("X-Backend", "inspected")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"created":%q,"hit":%d}`, string(b), hits.Load())
	})
	srv := newPlugboard(t)
	env, tok := runEnv(t, srv, backend.URL, "INSPECT_ADDR", "127.0.0.1:0", "LOG_FORMAT", "json")
	tc := newTestCLI(env, nil)
	code := tc.start("run")
	waitJoined(t, srv, tok.PathID)
	inspectURL := logField(t, tc.errOut.waitLine(t, "request inspector listening"), "url").(string)
	call := srv.CallURL(tok.PathID)

	var exceptions []string
	var exMu sync.Mutex
	listen := func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			exMu.Lock()
			exceptions = append(exceptions, fmt.Sprintf("%s (line %d)", e.ExceptionDetails.Text, e.ExceptionDetails.LineNumber))
			exMu.Unlock()
		}
	}
	if err := chromedp.Listen(ctx, listen); err != nil {
		t.Fatalf("start the browser: %v", err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) any {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	poll := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(id string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
		if err != nil {
			t.Fatalf("text of #%s: %v", id, err)
		}
		return s
	}
	do("open the page", chromedp.Navigate(inspectURL), chromedp.WaitVisible(chromedp.ID("filter")))
	poll("the event stream connects", `document.getElementById("conn").textContent === "live"`)

	// Requests cross the tunnel while the page is open: their rows appear live.
	req, _ := http.NewRequest(http.MethodPost, call+"/api/items?token=tok-in-query&page=2", strings.NewReader(`{"name":"widget"}`))
	req.Header.Set("Authorization", "Bearer secret-abc")
	req.Header.Set("Cookie", "sid=cookie-xyz")
	req.Header.Set("X-Trace-Me", "yes")
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("call: %d", res.StatusCode)
	}
	if c, _, _ := get(t, http.MethodGet, call+"/other/page", nil); c != http.StatusCreated {
		t.Fatalf("second call: %d", c)
	}
	rowFor := func(text string) string {
		return fmt.Sprintf(`[...document.querySelectorAll("#rows tr")].find(tr => tr.textContent.includes(%q))`, text)
	}
	poll("the rows appear live", rowFor("/api/items")+` && `+rowFor("/other/page")+` && !`+rowFor("/api/items")+`.classList.contains("pending")`)
	rowText, _ := eval(rowFor("/api/items") + ".textContent").(string)
	for _, want := range []string{"POST", "/api/items?token=••••••&page=2", "201", "17 B"} {
		if !strings.Contains(rowText, want) {
			t.Errorf("row %q lacks %q", rowText, want)
		}
	}
	if strings.Contains(rowText, "tok-in-query") {
		t.Errorf("the row shows the token: %q", rowText)
	}

	// A proxied WebSocket appears too, with its close code and the bytes each way.
	wsChat(t, "ws"+strings.TrimPrefix(call, "http")+"/ws/chat")
	poll("the WebSocket row appears", rowFor("/ws/chat")+` && `+rowFor("/ws/chat")+`.textContent.includes("1000")`)
	wsRow, _ := eval(rowFor("/ws/chat") + ".textContent").(string)
	if !strings.Contains(wsRow, "WS") || !strings.Contains(wsRow, "11 B") {
		t.Errorf("WebSocket row %q", wsRow)
	}

	// The filter hides rows that do not match.
	do("type in the filter", chromedp.SendKeys(chromedp.ID("filter"), "items"))
	if eval(rowFor("/other/page")+".hidden") != true || eval(rowFor("/api/items")+".hidden") != false {
		t.Error("the filter 'items' does not hide /other/page alone")
	}

	// Details: headers and bodies, secrets masked.
	eval(rowFor("/api/items") + ".click()")
	do("open the details", chromedp.WaitVisible(chromedp.ID("replay")))
	details := text("details")
	for _, want := range []string{`{"name":"widget"}`, `{"created":"{\"name\":\"widget\"}","hit":1}`, "Bearer ••••••", "sid=••••••",
		"session=••••••; Path=/", "X-Trace-Me", "X-Backend", "inspected", "application/json"} {
		if !strings.Contains(details, want) {
			t.Errorf("details lack %q:\n%s", want, details)
		}
	}
	for _, secret := range []string{"secret-abc", "cookie-xyz", "server-cookie-value", "tok-in-query"} {
		if strings.Contains(details, secret) {
			t.Errorf("details show the secret %q", secret)
		}
	}

	// Replay goes to the backend directly, with the real (unmasked) values.
	do("replay", chromedp.Click(chromedp.ID("replay")), chromedp.WaitVisible(chromedp.ID("replay-status")))
	status, replayText := text("replay-status"), text("replay-result")
	mu.Lock()
	auth := lastAuth
	mu.Unlock()
	if strings.Contains(replayText, "tok-in-query") || strings.Contains(replayText, "server-cookie-value") {
		t.Errorf("the replay shows a secret:\n%s", replayText)
	}
	if status != "201" || !strings.Contains(replayText, `"hit":3`) || hits.Load() != 3 || auth != "Bearer secret-abc" {
		t.Errorf("replay: status %q, backend hits %d, Authorization %q, shown:\n%s", status, hits.Load(), auth, replayText)
	}
	if rows := eval(`document.querySelectorAll("#rows tr").length`); rows != float64(3) {
		t.Errorf("%v rows after the replay: a replay must not cross the tunnel", rows)
	}

	// Clearing the filter shows every row again.
	eval(`const f = document.getElementById("filter"); f.value = ""; f.dispatchEvent(new Event("input"))`)
	if eval(rowFor("/other/page")+".hidden") != false || eval(rowFor("/ws/chat")+".hidden") != false {
		t.Error("clearing the filter does not show every row")
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.ArtifactDir(), "inspector.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	exMu.Lock()
	if len(exceptions) > 0 {
		t.Errorf("JavaScript exceptions: %v", exceptions)
	}
	exMu.Unlock()

	tc.sigs <- syscall.SIGTERM
	if c := waitCode(t, code); c != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", c, tc.errOut)
	}
}

// wsEcho accepts a WebSocket and echoes messages until it is closed.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	for {
		typ, data, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if c.Write(r.Context(), typ, data) != nil {
			return
		}
	}
}

// wsChat opens a WebSocket through the tunnel, has one 11-byte message echoed, and closes.
func wsChat(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello there")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := c.Read(ctx); err != nil || string(data) != "hello there" {
		t.Fatalf("echo %q %v", data, err)
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
}
