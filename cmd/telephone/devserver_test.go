package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/verastack/telephone"
)

// mintReply is the devserver's GET /mint answer.
type mintReply struct {
	Token     string `json:"token"`
	TokenID   string `json:"token_id"`
	PathID    string `json:"path_id"`
	ExpiresIn int64  `json:"expires_in"`
	SocketURL string `json:"socket_url"`
	CallURL   string `json:"call_url"`
}

func mint(t *testing.T, mintURL string) mintReply {
	t.Helper()
	c, _, body := get(t, http.MethodGet, mintURL+"?ttl=600", nil)
	var m mintReply
	if err := json.Unmarshal([]byte(body), &m); err != nil || c != 200 || m.Token == "" || m.ExpiresIn != 600 {
		t.Fatalf("mint = %d %q (%v)", c, body, err)
	}
	return m
}

func TestDevserverInProcess(t *testing.T) {
	t.Parallel()
	tc := newTestCLI(map[string]string{}, nil)
	code := tc.start("devserver", "--addr", "127.0.0.1:0", "--secret", secret64, "--log-level", "debug")
	ready := tc.out.waitLine(t, "READY ")
	m := mint(t, field(t, ready, "mint_url"))
	if m.SocketURL != field(t, ready, "socket_url") || !strings.HasPrefix(m.CallURL, field(t, ready, "base_url")+"/call/") {
		t.Errorf("mint %+v does not match %q", m, ready)
	}
	if c, _, _ := get(t, http.MethodGet, m.CallURL+"/x", nil); c != http.StatusServiceUnavailable {
		t.Errorf("call without a telephone = %d, want 503", c)
	}
	for _, want := range []string{"curl -s '", "/mint?ttl=3600'", "TELEPHONE_TOKEN=<token> PLUGBOARD_URL=ws://"} {
		if !strings.Contains(tc.out.String(), want) {
			t.Errorf("instructions lack %q", want)
		}
	}
	tc.sigs <- syscall.SIGHUP
	tc.sigs <- syscall.SIGTERM
	if c := waitCode(t, code); c != 0 {
		t.Fatalf("exit code %d", c)
	}
}

func TestDevserverBusyAddress(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tc := newTestCLI(map[string]string{}, nil)
	if c := tc.main([]string{"devserver", "--addr", busy.Addr().String()}); c != 1 {
		t.Fatalf("exit %d, want 1", c)
	}
}

func TestDevserverPrintsWarningBeyondLoopback(t *testing.T) {
	t.Parallel()
	out := newLineBuf()
	srv := newPlugboard(t)
	printDevserver(out, srv, &net.TCPAddr{IP: net.IPv4zero, Port: 4000})
	if !strings.Contains(out.String(), "warning: listening beyond loopback") {
		t.Errorf("no warning:\n%s", out)
	}
}

// TestBinaryOriginalEnvironment runs `telephone devserver` and `telephone` as separate
// processes; telephone gets ONLY the original sidecar's environment variables.
func TestBinaryOriginalEnvironment(t *testing.T) {
	t.Parallel()
	dev := startBinary(t, nil, "devserver", "--addr", "127.0.0.1:0")
	m := mint(t, field(t, dev.out.waitLine(t, "READY "), "mint_url"))

	backend := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Backend", "yes")
		io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(b))
	})
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(backend.URL, "http://"))
	db := filepath.Join(t.TempDir(), "telephone.db")
	healthPort := strconv.Itoa(freePort(t))
	var env []string
	for k, v := range originalEnv(m.SocketURL, m.Token, host, port, db, healthPort) {
		env = append(env, k+"="+v)
	}
	tel := startBinary(t, env)
	health := "http://127.0.0.1:" + healthPort
	eventually(t, "telephone ready", func() bool {
		res, err := httpClient.Get(health + "/ready")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
	c, hdr, body := get(t, http.MethodPost, m.CallURL+"/orders/?id=7", strings.NewReader("hello"))
	if c != 200 || body != "POST /orders/?id=7 hello" || hdr.Get("X-Backend") != "yes" {
		t.Errorf("call = %d %q %v", c, body, hdr)
	}
	// Ready means one session has joined; healthy means every session has, which may come a
	// moment later.
	var hb string
	eventually(t, "telephone healthy", func() bool {
		var code int
		code, _, hb = get(t, http.MethodGet, health+"/health", nil)
		return code == 200
	})
	var h healthBody
	if err := json.Unmarshal([]byte(hb), &h); err != nil || h.Status != "healthy" || !h.Connected {
		t.Errorf("health %q (%v)", hb, err)
	}
	tel.signal(t, syscall.SIGTERM)
	if c := tel.wait(t); c != 0 {
		t.Fatalf("telephone exit %d; stderr:\n%s", c, tel.errOut)
	}

	// The token is in the store, readable with the same variables.
	tc := newTestCLI(map[string]string{"SECRET_KEY_BASE": originalEnv("", "", "", "", "", "")["SECRET_KEY_BASE"], "TOKEN_DB_PATH": db}, nil)
	if c := tc.main([]string{"token-check"}); c != 0 || !strings.Contains(tc.out.String(), "would use the stored token (row 1)") {
		t.Errorf("token-check = %d:\n%s", c, tc.out)
	}
	dev.signal(t, syscall.SIGINT)
	if c := dev.wait(t); c != 0 {
		t.Fatalf("devserver exit %d; stderr:\n%s", c, dev.errOut)
	}
}

// TestDevserverJoinRef joins over a raw socket and sends a channel heartbeat with another
// join_ref, then a phoenix heartbeat: lenient answers the channel heartbeat with heartbeat_ack
// before the phoenix reply; strict drops it, so the phoenix reply comes first.
func TestDevserverJoinRef(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"strict", "lenient"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			tc := newTestCLI(map[string]string{}, nil)
			code := tc.start("devserver", "--addr", "127.0.0.1:0", "--join-ref", mode)
			ready := tc.out.waitLine(t, "READY ")
			m := mint(t, field(t, ready, "mint_url"))
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			conn, _, err := websocket.Dial(ctx, m.SocketURL+"?vsn=2.0.0&token="+m.Token, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.CloseNow()
			topic := "telephone:" + m.PathID
			send := func(frame string) {
				if err := conn.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
					t.Fatal(err)
				}
			}
			read := func() string {
				_, data, err := conn.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return string(data)
			}
			send(`["1","1","` + topic + `","phx_join",{}]`)
			if r := read(); !strings.Contains(r, `"ok"`) {
				t.Fatalf("join reply %s", r)
			}
			send(`["9","2","` + topic + `","heartbeat",{"ts":7}]`)
			send(`[null,"3","phoenix","heartbeat",{}]`)
			first := read()
			if got, want := strings.Contains(first, "heartbeat_ack"), mode == "lenient"; got != want {
				t.Fatalf("%s: first frame after a stale join_ref %s", mode, first)
			}
			conn.Close(websocket.StatusNormalClosure, "")
			tc.sigs <- syscall.SIGTERM
			if c := waitCode(t, code); c != 0 {
				t.Fatalf("exit code %d", c)
			}
		})
	}
}

func TestDevserverBadJoinRef(t *testing.T) {
	t.Parallel()
	tc := newTestCLI(map[string]string{}, nil)
	if c := tc.main([]string{"devserver", "--join-ref", "loose"}); c != exitConfig {
		t.Fatalf("exit %d, want %d", c, exitConfig)
	}
}

// TestDevserverServiceAccount gets a key from the loopback admin and vends a token with it.
func TestDevserverServiceAccount(t *testing.T) {
	t.Parallel()
	tc := newTestCLI(map[string]string{}, nil)
	code := tc.start("devserver", "--addr", "127.0.0.1:0")
	base := field(t, tc.out.waitLine(t, "READY "), "base_url")
	c, _, body := get(t, http.MethodGet, base+"/admin/service-account", nil)
	var sa struct {
		APIKey string `json:"api_key"`
		PathID string `json:"path_id"`
	}
	if err := json.Unmarshal([]byte(body), &sa); err != nil || c != 200 || !strings.HasPrefix(sa.APIKey, "sa_live_") || sa.PathID == "" {
		t.Fatalf("service account = %d %q (%v)", c, body, err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/api/token-vending/generate", strings.NewReader(`{"instance_id":"a"}`))
	req.Header.Set("Authorization", "Bearer "+sa.APIKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated || !strings.Contains(string(b), `"path":"/`+sa.PathID+`"`) {
		t.Fatalf("vend = %d %s", res.StatusCode, b)
	}
	if !strings.Contains(tc.out.String(), "PLUGBOARD_SERVICE_ACCOUNT_KEY=<api_key>") {
		t.Error("instructions lack the service-account line")
	}
	tc.sigs <- syscall.SIGTERM
	if c := waitCode(t, code); c != 0 {
		t.Fatalf("exit code %d", c)
	}
}

// TestDevserverWSCheckByDefault proxies a WebSocket that asks for a subprotocol through the
// devserver: with the ws_check pre-check (the default) the backend's choice is answered; with
// --ws-check=false it is not, as with Plugboard versions without the pre-check.
func TestDevserverWSCheckByDefault(t *testing.T) {
	t.Parallel()
	backend := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"chat.v1"}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		_, _, _ = c.Read(r.Context())
	})
	for _, tt := range []struct {
		args []string
		want string
	}{{nil, "chat.v1"}, {[]string{"--ws-check=false"}, ""}} {
		tc := newTestCLI(map[string]string{}, nil)
		code := tc.start(append([]string{"devserver", "--addr", "127.0.0.1:0"}, tt.args...)...)
		m := mint(t, field(t, tc.out.waitLine(t, "READY "), "mint_url"))
		client, err := telephone.New(m.SocketURL, telephone.WithToken(m.Token), telephone.WithBackendURL(backend.URL))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- client.Run(context.Background()) }()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		for !client.Status().Joined && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		wsURL := "ws" + strings.TrimPrefix(m.CallURL, "http") + "/chat"
		c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{Subprotocols: []string{"chat.v1"}})
		if err != nil {
			t.Fatalf("%v: dial: %v", tt.args, err)
		}
		if got := c.Subprotocol(); got != tt.want {
			t.Errorf("%v: subprotocol %q, want %q", tt.args, got, tt.want)
		}
		c.CloseNow()
		_ = client.Shutdown(ctx)
		<-done
		cancel()
		tc.sigs <- syscall.SIGTERM
		if c := waitCode(t, code); c != 0 {
			t.Fatalf("exit code %d", c)
		}
	}
}
