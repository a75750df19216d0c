package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/verastack/telephone/telephonetest"
)

// devserver is `telephone devserver`: telephonetest's in-memory Plugboard on a TCP address,
// with the loopback contract of DESIGN.md (/telephone/websocket, /call/<path_id>/..., /mint,
// /admin/...). It stops on SIGINT or SIGTERM.
func (c *cli) devserver(args []string) int {
	fset := flag.NewFlagSet("telephone devserver", flag.ContinueOnError)
	addr := fset.String("addr", "127.0.0.1:4000", "listen `address` (host:port; port 0 picks a free one)")
	secret := fset.String("secret", "", "Plugboard `secret_key_base` that signs tokens (default: random)")
	lifetime := fset.Duration("token-lifetime", telephonetest.DefaultTokenLifetime, "lifetime of minted and refreshed tokens")
	logLevel := fset.String("log-level", "info", "debug, info, warn or error")
	if code, done := c.parseFlags(fset, args); done {
		return code
	}
	var lc Config
	if err := setLogLevel(&lc, *logLevel); err != nil {
		fmt.Fprintf(c.stderr, "telephone devserver: --log-level: %v\n", err)
		return exitConfig
	}
	level := new(slog.LevelVar)
	level.Set(lc.LogLevel)
	log := newLogger(c.stderr, logConfig{Level: level, Terminal: isTerminal(c.stderr), NoColor: c.noColor()})
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Error("cannot listen", slog.String("addr", *addr), slog.Any("error", err))
		return exitFail
	}
	srv := telephonetest.Serve(l, telephonetest.WithSecret(*secret), telephonetest.WithTokenLifetime(*lifetime),
		telephonetest.WithLogger(log))
	defer srv.Close()
	printDevserver(c.stdout, srv, l.Addr())
	waitForStop(c.signals, log)
	log.Info("devserver stopping")
	return exitOK
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
Connect a telephone to it:
  TELEPHONE_TOKEN=<token> PLUGBOARD_URL=%s BACKEND_PORT=8080 telephone
`, srv.SocketURL(), base, base, base, srv.SocketURL())
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
