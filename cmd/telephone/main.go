// Command telephone is the telephone CLI: a drop-in replacement for the original Plugboard
// sidecar, configured by the same environment variables, plus a local development server, a
// self-contained demo and a token diagnostic. README.md beside this file documents it.
//
// Usage:
//
//	telephone [run] [flags]        connect to Plugboard and forward requests to the backend
//	telephone demo [--addr A]      local Plugboard + demo backend + tunnel, in one process
//	telephone devserver [--addr A] a local Plugboard (telephonetest) for development
//	telephone token-check          show the configured and stored tokens and which one is used
//	telephone version              print the version and commit (also --version, -v)
//	telephone help                 list the commands (also --help, -h)
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	c := &cli{
		stdout:   os.Stdout,
		stderr:   os.Stderr,
		environ:  environMap,
		readFile: os.ReadFile,
		signals:  sigs,
	}
	os.Exit(c.main(os.Args[1:]))
}

// cli is what a command may use of the process, so that tests can run commands in-process
// with their own environment, output and signals.
type cli struct {
	stdout, stderr io.Writer
	environ        func() map[string]string          // the environment; re-read on SIGHUP
	readFile       func(name string) ([]byte, error) // reads the .env file
	signals        <-chan os.Signal                  // SIGINT, SIGTERM and SIGHUP
}

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1 // runtime failure, or no usable token for token-check
	exitConfig = 2 // bad configuration or usage
)

// main runs the command named by args[0] (default run) and returns the exit code.
func (c *cli) main(args []string) int {
	cmd, rest := "run", args
	if len(args) > 0 && (!strings.HasPrefix(args[0], "-") || topLevelFlags[args[0]] != "") {
		cmd, rest = args[0], args[1:]
		if alias := topLevelFlags[cmd]; alias != "" {
			cmd = alias
		}
	}
	switch cmd {
	case "run":
		return c.run(rest)
	case "demo":
		return c.demo(rest)
	case "devserver":
		return c.devserver(rest)
	case "token-check":
		return c.tokenCheck(rest)
	case "version":
		fmt.Fprintln(c.stdout, readBuildInfo())
		return exitOK
	case "help":
		c.usage(c.stdout)
		return exitOK
	default:
		fmt.Fprintf(c.stderr, "telephone: unknown command %q\n\n", cmd)
		c.usage(c.stderr)
		return exitConfig
	}
}

// topLevelFlags are the flags accepted in place of a command; any other flag belongs to run.
var topLevelFlags = map[string]string{
	"-h": "help", "-help": "help", "--help": "help",
	"-v": "version", "-version": "version", "--version": "version",
}

// usage lists the commands on w: stdout when asked for, stderr after a usage error.
func (c *cli) usage(w io.Writer) {
	fmt.Fprint(w, `telephone connects a backend to a Plugboard server: it keeps a WebSocket to Plugboard and
serves the requests Plugboard pushes to it. A drop-in replacement for the original sidecar.

Usage:
  telephone [run] [flags]          connect to Plugboard and forward its requests to the backend
  telephone demo [--addr A] [--ops A]
                                   run a local Plugboard, a demo backend and the tunnel; print a URL to curl
  telephone devserver [--addr A] [--secret S]
                                   run a local Plugboard (telephonetest) for development
  telephone token-check [--env F] [--db PATH]
                                   show the configured and stored tokens and which one would be used
  telephone version                print the version and commit (also --version, -v)
  telephone help                   print this help (also --help, -h)

Configuration of run comes from environment variables, an optional .env file (--env, default .env)
and flags (telephone run -h lists them); see cmd/telephone/README.md.
`)
}

// noColor reports whether NO_COLOR (https://no-color.org) asks for output without colours.
func (c *cli) noColor() bool { return c.environ()["NO_COLOR"] != "" }

// parseFlags parses the arguments of a subcommand. Asked for help (-h, --help), it prints the
// flags on stdout and is done with exit code 0; a usage error goes to stderr with exit code 2.
func (c *cli) parseFlags(fset *flag.FlagSet, args []string) (code int, done bool) {
	if wantsHelp(args) {
		fset.SetOutput(c.stdout)
		fset.Usage()
		return exitOK, true
	}
	fset.SetOutput(c.stderr)
	if err := fset.Parse(args); err != nil {
		return exitConfig, true
	}
	if fset.NArg() > 0 {
		fmt.Fprintf(c.stderr, "%s: unexpected argument %q\n", fset.Name(), fset.Arg(0))
		return exitConfig, true
	}
	return exitOK, false
}

// environMap returns the process environment as a map.
func environMap() map[string]string {
	env := os.Environ()
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}
