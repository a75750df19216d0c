package transport

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("TRANSPORT_PROXY_CHILD") == "1" {
		proxyChild() // a child process of TestProxyFromEnvironment: no tests run
		return
	}
	goleak.VerifyTestMain(m)
}
