package telephone_test

import (
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/verastack/telephone"
)

func TestOptionsAccepted(t *testing.T) {
	t.Parallel()
	_, err := telephone.New("wss://pb.example/telephone/websocket",
		telephone.WithBackendURL("https://backend.internal:8443/base"),
		telephone.WithBackend(http.DefaultTransport),
		telephone.WithTLSConfig(nil2tls()), telephone.WithProxy(http.ProxyFromEnvironment),
		telephone.WithClockSkew(time.Minute), telephone.WithPhoenixHeartbeat(time.Second),
		telephone.WithConnectTimeout(time.Second), telephone.WithUTF8Policy(telephone.UTF8Replace),
		telephone.WithAcceptEncodingPassthrough(), telephone.WithWebSocketHandshakeTimeout(time.Second),
		telephone.WithWebSocketLimits(2, 10, time.Minute, 100), telephone.WithCircuitBreaker(0, 0),
		telephone.WithRetries(0, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []telephone.Option{
		telephone.WithTLSConfig(nil), telephone.WithProxy(nil), telephone.WithClockSkew(-time.Second),
		telephone.WithUTF8Policy(7), telephone.WithWebSocketHandshakeTimeout(0), telephone.WithMetrics(nil),
		telephone.WithTokenStore(nil), telephone.WithHandler(nil), telephone.WithLogger(nil), telephone.WithBackend(nil),
		telephone.WithMaxRequestBody(0), telephone.WithMaxResponseSize(-1), telephone.WithRequestTimeout(0),
		telephone.WithWebSocketLimits(0, 1, time.Second, 1), telephone.WithWebSocketLimits(1, 0, time.Second, 1),
		telephone.WithCircuitBreaker(1, 0), telephone.WithBackendURL("http://x/?q=1"), telephone.WithBackendURL("http://"),
		telephone.WithBackendURL("::"),
	} {
		if _, err := telephone.New("ws://x", telephone.WithBackendURL("http://b"), bad); !errors.As(err, new(*telephone.OptionError)) {
			t.Errorf("accepted an invalid option: %v", err)
		}
	}
	var oe *telephone.OptionError
	_, err = telephone.New("ws://x", telephone.WithBackendURL("http://b"), telephone.WithRequestTimeout(0))
	if !errors.As(err, &oe) || !strings.Contains(oe.Error(), "WithRequestTimeout") {
		t.Errorf("error does not name the option: %v", err)
	}
}

func nil2tls() *tls.Config { return &tls.Config{MinVersion: tls.VersionTLS12} }
