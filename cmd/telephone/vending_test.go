package main

import (
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/verastack/telephone/telephonetest"
)

func TestConfigTokenVending(t *testing.T) {
	t.Parallel()
	const key = "sa_live_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
	path := telephonetest.NewPathID()
	env := map[string]string{"PLUGBOARD_URL": testURL, "PLUGBOARD_SERVICE_ACCOUNT_KEY": key}
	c, errs := loadConfig(configInput{Env: env, ReadFile: fakeFiles(nil), Hostname: "pod-7"})
	if len(errs) > 0 || c.ServiceAccountKey != key || c.InstanceID != "pod-7" || c.PathID != "" || c.APIURL != "" {
		t.Fatalf("key only: %v %+v", errs, c)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "every restart vends") {
		t.Errorf("warnings %q", c.Warnings)
	}
	c, errs = loadConfig(configInput{Env: env, ReadFile: fakeFiles(nil), Hostname: "pod-7",
		Args: []string{"--instance-id", "blue", "--path-id", path, "--api-url", "https://pb.example"}})
	if len(errs) > 0 || c.InstanceID != "blue" || c.PathID != path || c.APIURL != "https://pb.example" {
		t.Fatalf("flags: %v %+v", errs, c)
	}
	bad := map[string]string{"PLUGBOARD_URL": testURL, "PLUGBOARD_SERVICE_ACCOUNT_KEY": "sa_live_ x",
		"PLUGBOARD_PATH_ID": strings.ToUpper(path), "PLUGBOARD_API_URL": "ws://pb.example"}
	_, errs = loadConfig(configInput{Env: bad, ReadFile: fakeFiles(nil)})
	got := strings.Join(errStrings(errs), "\n")
	for _, want := range []string{"PLUGBOARD_SERVICE_ACCOUNT_KEY: must not contain spaces", "PLUGBOARD_PATH_ID: must be a lower-case UUID",
		"PLUGBOARD_API_URL: scheme must be http or https"} {
		if !strings.Contains(got, want) {
			t.Errorf("errors %q lack %q", got, want)
		}
	}
	if strings.Contains(got, "sa_live_ x") {
		t.Error("an error shows the key")
	}
	c, _ = load(base("PLUGBOARD_PATH_ID", path, "PLUGBOARD_API_URL", "http://x"), nil)
	if w := strings.Join(c.Warnings, "\n"); !strings.Contains(w, "PLUGBOARD_PATH_ID is ignored") || !strings.Contains(w, "PLUGBOARD_API_URL is ignored") {
		t.Errorf("warnings %q", w)
	}
	if _, errs := load(base("PLUGBOARD_API_URL", "http://u:p@x/?a"), nil); len(errs) != 1 {
		t.Errorf("API URL with user info: %v", errs)
	}
}

// TestRunVendsWithTheKey runs the CLI with only a service-account key: it vends a token and
// joins; the key never reaches the logs.
func TestRunVendsWithTheKey(t *testing.T) {
	t.Parallel()
	srv := newPlugboard(t)
	sa, err := srv.NewServiceAccount("", "workers")
	if err != nil {
		t.Fatal(err)
	}
	tc := newTestCLI(map[string]string{"PLUGBOARD_URL": srv.SocketURL(), "PLUGBOARD_SERVICE_ACCOUNT_KEY": sa.APIKey,
		"PLUGBOARD_PATH_ID": sa.PathID, "BACKEND_URL": okBackend(t, "vended").URL, "LOG_FORMAT": "json"}, nil)
	code := tc.start("run")
	waitJoined(t, srv, sa.PathID)
	if c, _, body := get(t, http.MethodGet, srv.CallURL(sa.PathID)+"/", nil); c != 200 || body != "vended" {
		t.Fatalf("call: %d %q", c, body)
	}
	line := tc.errOut.waitLine(t, "token vended")
	tc.sigs <- syscall.SIGTERM
	if c := waitCode(t, code); c != exitOK {
		t.Fatalf("exit %d", c)
	}
	if strings.Contains(tc.errOut.String(), sa.APIKey) {
		t.Fatal("the key was logged")
	}
	id, _ := logField(t, line, "token_id").(string)
	if id == "" {
		t.Fatalf("vended line %q", line)
	}
}

// TestRunStopsOnARefusedKey: a key Plugboard refuses ends run with exit code 1 and an error
// naming the variable, without the key.
func TestRunStopsOnARefusedKey(t *testing.T) {
	t.Parallel()
	srv := newPlugboard(t)
	const key = "sa_live_not_a_key_of_this_server"
	tc := newTestCLI(map[string]string{"PLUGBOARD_URL": srv.SocketURL(), "PLUGBOARD_SERVICE_ACCOUNT_KEY": key,
		"BACKEND_URL": okBackend(t, "x").URL, "LOG_FORMAT": "json"}, nil)
	if c := waitCode(t, tc.start("run")); c != exitFail {
		t.Fatalf("exit %d, want %d", c, exitFail)
	}
	out := tc.errOut.String()
	if !strings.Contains(out, "PLUGBOARD_SERVICE_ACCOUNT_KEY") || strings.Contains(out, key) {
		t.Fatalf("stderr:\n%s", out)
	}
}
