package main

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
)

// checkDemo calls the demo's endpoints through the printed call URL.
func checkDemo(t *testing.T, call string) {
	t.Helper()
	if c, _, body := get(t, http.MethodGet, call+"/hello", nil); c != 200 || !strings.Contains(body, "came back through the telephone tunnel") {
		t.Errorf("/hello = %d %q", c, body)
	}
	c, _, body := get(t, http.MethodPost, call+"/echo?x=1", strings.NewReader("ping"))
	var echo struct{ Method, Path, Query, Body string }
	if err := json.Unmarshal([]byte(body), &echo); err != nil || c != 200 ||
		echo.Method != "POST" || echo.Path != "/echo" || echo.Query != "x=1" || echo.Body != "ping" {
		t.Errorf("/echo = %d %q", c, body)
	}
	if c, _, body := get(t, http.MethodGet, call+"/time", nil); c != 200 || !strings.Contains(body, `"unix"`) {
		t.Errorf("/time = %d %q", c, body)
	}
	if c, _, body := get(t, http.MethodGet, call+"/", nil); c != 200 || !strings.Contains(body, "Limits of the tunnel") {
		t.Errorf("/ = %d %q", c, body)
	}
	if c, _, _ := get(t, http.MethodGet, call+"/nope", nil); c != 404 {
		t.Errorf("/nope = %d", c)
	}
}

func TestDemoInProcess(t *testing.T) {
	t.Parallel()
	tc := newTestCLI(map[string]string{}, nil)
	code := tc.start("demo", "--addr", "127.0.0.1:0", "--ops", "127.0.0.1:0", "--inspect", "127.0.0.1:0")
	ready := tc.out.waitLine(t, "READY ")
	if n := tc.out.Writes(); n != 1 {
		t.Errorf("the banner took %d writes: log lines could land inside it", n)
	}
	checkDemo(t, field(t, ready, "call_url"))
	access := tc.errOut.waitLine(t, `"path":"/hello"`) // the access log is on by default in demo
	if !strings.Contains(access, `"level":"INFO","msg":"`+accessMessage+`"`) || !strings.Contains(access, `"status":200`) {
		t.Errorf("demo access line %q", access)
	}
	if c, _, body := get(t, http.MethodGet, field(t, ready, "ops_url")+"/ready", nil); c != 200 || body != "ready\n" {
		t.Errorf("demo /ready = %d %q", c, body)
	}
	if !strings.Contains(tc.out.String(), "curl ") || !strings.Contains(tc.out.String(), "Request inspector") {
		t.Error("no curl hint or inspector URL printed")
	}
	// The inspector saw the requests above: /hello was the first.
	var first struct{ Method, Target string }
	if c, _, body := get(t, http.MethodGet, field(t, ready, "inspect_url")+"entries/1", nil); c != 200 ||
		json.Unmarshal([]byte(body), &first) != nil || first.Method != "GET" || first.Target != "/hello" {
		t.Errorf("inspector entry 1 = %d %q", c, body)
	}
	tc.sigs <- syscall.SIGHUP
	tc.sigs <- syscall.SIGINT
	if c := waitCode(t, code); c != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", c, tc.errOut)
	}
}

// TestDemoBusyAddress: the default address falls back to a free port; an explicit one fails.
func TestDemoBusyAddress(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	d, err := startDemo(demoAddrs{plugboard: busy.Addr().String(), fallback: true, inspect: busy.Addr().String(), inspectFallback: true}, discard)
	if err != nil {
		t.Fatal(err)
	}
	out := newLineBuf()
	d.print(out)
	if !strings.Contains(out.String(), "is busy; the demo Plugboard uses") || !strings.Contains(out.String(), "inspect_url=http://127.0.0.1:") {
		t.Errorf("no fallback note:\n%s", out)
	}
	checkDemo(t, field(t, out.waitLine(t, "READY "), "call_url"))
	d.stop()

	tc := newTestCLI(map[string]string{}, nil)
	if c := tc.main([]string{"demo", "--addr", busy.Addr().String()}); c != 1 {
		t.Fatalf("explicit busy address: exit %d, want 1", c)
	}
	if !strings.Contains(tc.errOut.String(), "demo failed to start") {
		t.Errorf("stderr:\n%s", tc.errOut)
	}
	if _, err := startDemo(demoAddrs{plugboard: "127.0.0.1:0", ops: busy.Addr().String()}, discard); err == nil {
		t.Error("demo started with a busy --ops address")
	}
	if _, err := startDemo(demoAddrs{plugboard: "127.0.0.1:0", inspect: busy.Addr().String()}, discard); err == nil {
		t.Error("demo started with a busy explicit --inspect address")
	}
	if c := tc.main([]string{"demo", "--inspect", "nonsense"}); c != exitConfig {
		t.Errorf("--inspect nonsense: exit %d", c)
	}
}

// TestDemoBinary runs the real command, curls the printed URL and interrupts it.
func TestDemoBinary(t *testing.T) {
	t.Parallel()
	p := startBinary(t, []string{"PATH=/usr/bin:/bin"}, "demo", "--addr", "127.0.0.1:0")
	ready := p.out.waitLine(t, "READY ")
	checkDemo(t, field(t, ready, "call_url"))
	p.signal(t, syscall.SIGINT)
	if c := p.wait(t); c != 0 {
		t.Fatalf("demo exit code %d; stderr:\n%s", c, p.errOut)
	}
}
