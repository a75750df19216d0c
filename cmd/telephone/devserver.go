package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/verastack/telephone/telephonetest"
)

// devserver is `telephone devserver`: telephonetest's in-memory Plugboard on a TCP address,
// with the loopback contract of cmd/telephone/README.md (/telephone/websocket, /call/<path_id>/..., /mint,
// /admin/...). It stops on SIGINT or SIGTERM.
func (c *cli) devserver(args []string) int {
	fset := flag.NewFlagSet("telephone devserver", flag.ContinueOnError)
	addr := fset.String("addr", "127.0.0.1:4000", "listen `address` (host:port; port 0 picks a free one)")
	secret := fset.String("secret", "", "Plugboard `secret_key_base` that signs tokens (default: random)")
	lifetime := fset.Duration("token-lifetime", telephonetest.DefaultTokenLifetime, "lifetime of minted and refreshed tokens")
	logLevel := fset.String("log-level", "info", "debug, info, warn or error")
	tlsCert := fset.String("tls-cert", "", "serve https:// and wss:// with this PEM certificate `file` (with --tls-key)")
	tlsKey := fset.String("tls-key", "", "PEM private key `file` of --tls-cert")
	joinRef := fset.String("join-ref", "strict", "join_ref check: strict (Phoenix 1.8.3+: a message whose join_ref is not the channel's is dropped) or lenient (Phoenix 1.8.2 and older: any join_ref)")
	wsCheck := fset.Bool("ws-check", true, "send the ws_check pre-check before a proxied WebSocket upgrade, as the newest Plugboard does")
	if code, done := c.parseFlags(fset, args); done {
		return code
	}
	if *joinRef != "strict" && *joinRef != "lenient" {
		fmt.Fprintf(c.stderr, "telephone devserver: --join-ref %q: want strict or lenient\n", *joinRef)
		return exitConfig
	}
	var lc Config
	if err := setLogLevel(&lc, *logLevel); err != nil {
		fmt.Fprintf(c.stderr, "telephone devserver: --log-level: %v\n", err)
		return exitConfig
	}
	level := new(slog.LevelVar)
	level.Set(lc.LogLevel)
	log := newLogger(c.stderr, logConfig{Level: level, Terminal: isTerminal(c.stderr), NoColor: c.noColor()})
	tlsCfg, err := devserverTLS(*tlsCert, *tlsKey)
	if err != nil {
		fmt.Fprintf(c.stderr, "telephone devserver: %v\n", err)
		return exitConfig
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Error("cannot listen", slog.String("addr", *addr), slog.Any("error", err))
		return exitFail
	}
	opts := []telephonetest.Option{telephonetest.WithSecret(*secret), telephonetest.WithTokenLifetime(*lifetime), telephonetest.WithLogger(log)}
	if *joinRef == "lenient" {
		opts = append(opts, telephonetest.WithLenientJoinRef())
	}
	if *wsCheck {
		opts = append(opts, telephonetest.WithWSCheck())
	}
	var srv *telephonetest.Server
	if tlsCfg != nil {
		srv = telephonetest.ServeTLS(l, tlsCfg, opts...)
	} else {
		srv = telephonetest.Serve(l, opts...)
	}
	defer srv.Close()
	printDevserver(c.stdout, srv, l.Addr())
	log.Info("devserver serving", slog.String("join_ref", *joinRef))
	waitForStop(c.signals, log)
	log.Info("devserver stopping")
	return exitOK
}

// devserverTLS loads the --tls-cert and --tls-key pair; nil when neither is given.
func devserverTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// printDevserver tells a person how to use the server, and ends with one machine-readable line.
func printDevserver(w io.Writer, srv *telephonetest.Server, addr net.Addr) {
	base := srv.URL()
	fmt.Fprintf(w, `telephone devserver: a local Plugboard for development and tests (not for production)
  socket URL   %s
  mint token   curl -s '%s/mint?ttl=3600'
               answers {"token","token_id","path_id","expires_in","socket_url","call_url"}
  call URL     %s/call/<path_id>/<path>
  admin        %s/admin/stats  /admin/revoke?token_id=...  /admin/disconnect?token_id=...
  service key  curl -s '%s/admin/service-account?path_id=<path_id>'
               answers {"api_key","path_id"}; tokens are vended at %s%s
               /admin/sockets  /admin/disconnect?conn=<socket id> (cuts one socket)
Connect a telephone to it:
  TELEPHONE_TOKEN=<token> PLUGBOARD_URL=%s BACKEND_PORT=8080 telephone
  or, one token per replica: PLUGBOARD_SERVICE_ACCOUNT_KEY=<api_key> PLUGBOARD_URL=%s BACKEND_PORT=8080 telephone
`, srv.SocketURL(), base, base, base, base, base, telephonetest.VendPath, srv.SocketURL(), srv.SocketURL())
	if strings.HasPrefix(base, "https:") {
		fmt.Fprintln(w, "TLS: clients must trust the certificate's CA: PLUGBOARD_CA_FILE=<ca.pem> for telephone, curl --cacert <ca.pem>")
	}
	if tcp, ok := addr.(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		fmt.Fprintln(w, "warning: listening beyond loopback; /mint and /admin answer loopback clients only")
	}
	fmt.Fprintf(w, "READY base_url=%s socket_url=%s mint_url=%s/mint\n", base, srv.SocketURL(), base)
}

// waitForStop blocks until SIGINT or SIGTERM; SIGHUP is ignored.
func waitForStop(signals <-chan os.Signal, log *slog.Logger) os.Signal {
	for sig := range signals {
		if sig != syscall.SIGHUP {
			return sig
		}
		log.Info("ignoring SIGHUP")
	}
	return nil
}

// waitTimeout is the bounded wait used where a command waits for its own parts.
const waitTimeout = 10 * time.Second
