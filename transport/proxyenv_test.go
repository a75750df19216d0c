package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// proxyChild runs in a child process started by TestProxyFromEnvironment (see TestMain): the
// standard library reads HTTPS_PROXY/NO_PROXY once per process, so each setting needs a
// process of its own. It prints whether the dial went to the proxy.
func proxyChild() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Dial(ctx, "wss://plugboard.invalid/telephone/websocket", Options{Token: testToken})
	var op *net.OpError
	fmt.Printf("PROXIED=%v\n", errors.As(err, &op) && op.Op == "proxyconnect")
}

// TestProxyFromEnvironment checks the default Options.Proxy honours HTTPS_PROXY and NO_PROXY.
// The proxy address refuses connections, so no network is needed: a dial that went to the
// proxy fails with a proxyconnect error, one that bypassed it fails resolving the host.
func TestProxyFromEnvironment(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxy := "http://" + l.Addr().String()
	l.Close() // nothing listens there: connections are refused
	for _, tt := range []struct {
		noProxy string
		proxied bool
	}{
		{"", true},
		{"plugboard.invalid", false},
		{"other.example", true},
	} {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "TRANSPORT_PROXY_CHILD=1", "HTTPS_PROXY="+proxy, "https_proxy="+proxy,
			"NO_PROXY="+tt.noProxy, "no_proxy="+tt.noProxy)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		if want := fmt.Sprintf("PROXIED=%v", tt.proxied); !strings.Contains(string(out), want) {
			t.Errorf("NO_PROXY=%q: want %s, child said:\n%s", tt.noProxy, want, out)
		}
	}
}
