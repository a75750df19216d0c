package telephone

import (
	"net/http"
	"testing"
)

func TestVendingEndpointDefaultsToTheSocketOrigin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ socket, api, want string }{
		{"wss://pb.example:8443/telephone/websocket?x=1", "", "https://pb.example:8443/api/token-vending/generate"},
		{"ws://127.0.0.1:4000/telephone/websocket", "", "http://127.0.0.1:4000/api/token-vending/generate"},
		{"wss://pb.example/telephone/websocket", "https://api.example/plug/", "https://api.example/plug/api/token-vending/generate"},
	} {
		c, err := New(tc.socket, WithHandler(http.NotFoundHandler()), WithTokenVending(TokenVending{APIKey: "sa_live_x", APIURL: tc.api}))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.tokens.vend.endpoint; got != tc.want {
			t.Errorf("%s %q: %s, want %s", tc.socket, tc.api, got, tc.want)
		}
	}
}
