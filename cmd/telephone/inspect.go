package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"

	"github.com/verastack/telephone/internal/inspector"
)

// setInspectAddr parses INSPECT_ADDR: host:port, :port or a bare port. Without a host the
// inspector binds to loopback (127.0.0.1); a host is used as given ("told otherwise").
func setInspectAddr(c *Config, v string) error {
	c.InspectAddr = ""
	if v == "" {
		return nil
	}
	addr, err := inspectListenAddr(v)
	if err != nil {
		return err
	}
	c.InspectAddr = addr
	return nil
}

// inspectListenAddr turns an INSPECT_ADDR or --inspect value into a listen address.
func inspectListenAddr(v string) (string, error) {
	if _, err := strconv.Atoi(v); err == nil {
		v = ":" + v
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return "", fmt.Errorf("must be host:port, :port or a port (e.g. 127.0.0.1:4040 or 4040), got %q", v)
	}
	if _, err := parseInt(port, 0, 65535); err != nil {
		return "", fmt.Errorf("port %s", err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

func setInspectUnmask(c *Config, v string) error { return setBool(&c.InspectUnmask, v) }

// inspectServer is the running request inspector and its HTTP server.
type inspectServer struct {
	ins *inspector.Inspector
	srv *opsServer
}

// startInspect serves the request inspector on addr. backend (may be "") is where replays go.
func startInspect(addr, backend string, showSecrets bool, log *slog.Logger) (*inspectServer, error) {
	opt := inspector.Options{ShowSecrets: showSecrets}
	if backend != "" {
		u, err := url.Parse(backend)
		if err != nil {
			return nil, fmt.Errorf("backend URL: %w", err)
		}
		opt.Backend = u
	}
	ins := inspector.New(opt)
	srv, err := startOps(addr, ins.Handler(), log)
	if err != nil {
		return nil, err
	}
	is := &inspectServer{ins: ins, srv: srv}
	if ta, ok := srv.addr.(*net.TCPAddr); ok && !ta.IP.IsLoopback() {
		log.Warn("the request inspector listens beyond loopback: whoever reaches it sees request bodies and can replay requests",
			slog.String("addr", srv.addr.String()))
	}
	log.Info("request inspector listening", slog.String("url", is.url()))
	return is, nil
}

func (is *inspectServer) url() string { return is.srv.url() + "/" }

// stop ends the page's event streams, then the server.
func (is *inspectServer) stop() {
	is.ins.Close()
	is.srv.stop()
}
