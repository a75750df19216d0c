package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writePKI writes a private CA and a server certificate for 127.0.0.1 signed by it, as PEM
// files in dir.
func writePKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, leafKey := newKey(), newKey()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "telephone test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", leafDER), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// trusting returns an HTTP client that trusts the CA in caFile.
func trusting(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: testTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// TestDevserverTLS: the devserver serves https:// and wss://, and a telephone that trusts its
// CA through PLUGBOARD_CA_FILE joins and serves a request.
func TestDevserverTLS(t *testing.T) {
	t.Parallel()
	caFile, certFile, keyFile := writePKI(t, t.TempDir())
	dev := newTestCLI(map[string]string{}, nil)
	devCode := dev.start("devserver", "--addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)
	ready := dev.out.waitLine(t, "READY ")
	if !strings.HasPrefix(field(t, ready, "socket_url"), "wss://127.0.0.1:") || !strings.Contains(dev.out.String(), "PLUGBOARD_CA_FILE") {
		t.Fatalf("devserver output:\n%s", dev.out)
	}
	m := mintWith(t, trusting(t, caFile), field(t, ready, "mint_url"))
	tel := newTestCLI(map[string]string{"PLUGBOARD_URL": m.SocketURL, "TELEPHONE_TOKEN": m.Token,
		"PLUGBOARD_CA_FILE": caFile, "BACKEND_URL": okBackend(t, "over tls").URL}, nil)
	telCode := tel.start("run")
	tel.errOut.waitLine(t, "joined Plugboard")
	res, err := trusting(t, caFile).Get(m.CallURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("call over https: %d", res.StatusCode)
	}
	tel.sigs <- syscall.SIGTERM
	dev.sigs <- syscall.SIGTERM
	if c1, c2 := waitCode(t, telCode), waitCode(t, devCode); c1 != 0 || c2 != 0 {
		t.Fatalf("exit codes %d %d", c1, c2)
	}

	bad := newTestCLI(map[string]string{}, nil)
	if c := bad.main([]string{"devserver", "--tls-cert", certFile}); c != exitConfig || !strings.Contains(bad.errOut.String(), "go together") {
		t.Errorf("--tls-cert alone: %d %q", c, bad.errOut)
	}
}

// mintWith mints a token from a devserver with client.
func mintWith(t *testing.T, client *http.Client, mintURL string) mintReply {
	t.Helper()
	res, err := client.Get(mintURL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m mintReply
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil || m.Token == "" {
		t.Fatalf("mint: %d %v", res.StatusCode, err)
	}
	return m
}

// dockerBuildLine returns the Dockerfile's `go build` command with its build arguments filled
// in and the output path replaced by out.
func dockerBuildLine(t *testing.T, version, commit, out string) string {
	t.Helper()
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, "go build") {
			line = strings.TrimPrefix(l, "RUN ")
		}
	}
	if line == "" {
		t.Fatal("the Dockerfile has no RUN ... go build line")
	}
	return strings.NewReplacer("${VERSION}", version, "${COMMIT}", commit, "/out/telephone", out).Replace(line)
}

// TestDockerfile checks the image's shape: multi-stage, a static build, FROM scratch, a
// numeric non-root user, the binary as entry point.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var from, user, entry []string
	for _, l := range strings.Split(string(b), "\n") {
		switch f := strings.Fields(l); {
		case len(f) == 0:
		case f[0] == "FROM":
			from = append(from, strings.Join(f[1:], " "))
		case f[0] == "USER":
			user = f[1:]
		case f[0] == "ENTRYPOINT":
			entry = f[1:]
		}
	}
	if len(from) < 2 || !strings.HasPrefix(from[0], "golang:") || from[len(from)-1] != "scratch" {
		t.Errorf("stages %q: want a golang build stage and a final FROM scratch", from)
	}
	if len(user) != 1 || regexp.MustCompile(`^[1-9][0-9]*:[1-9][0-9]*$`).FindString(user[0]) == "" {
		t.Errorf("USER %q: want a numeric non-root uid:gid (scratch has no /etc/passwd)", user)
	}
	if strings.Join(entry, " ") != `["/telephone"]` {
		t.Errorf("ENTRYPOINT %q", entry)
	}
	// CA roots for a scratch image: compiled in, used only where the system has none.
	deps, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil || !strings.Contains(string(deps), "\ngolang.org/x/crypto/x509roots/fallback/bundle\n") {
		t.Errorf("the binary must embed golang.org/x/crypto/x509roots/fallback/bundle (go list -deps: %v)", err)
	}
	build := dockerBuildLine(t, "v", "c", "/x")
	for _, want := range []string{"CGO_ENABLED=0 ", " -trimpath ", "-X main.version=v ", "-X main.commit=c"} {
		if !strings.Contains(build, want) {
			t.Errorf("the go build line lacks %q: %s", want, build)
		}
	}
}

// TestEmptyRoot proves that the binary the Dockerfile builds needs nothing from the file
// system: chrooted into a directory that holds only the binary (and, for the last step, a CA
// file), as the image's non-root user 65532, it prints its version, runs the demo and answers a request, and joins a local TLS
// devserver over wss:// with a private CA given by PLUGBOARD_CA_FILE.
func TestEmptyRoot(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("TestEmptyRoot needs root for chroot, and CI must run it")
		}
		t.Skip("chroot needs root: run the tests as root (CI does) to prove the binary runs in an empty root")
	}
	root := t.TempDir()
	const commitID = "feedfacefeedfacefeedfacefeedfacefeedface"
	build := exec.Command("sh", "-c", dockerBuildLine(t, "v9.9.9-emptyroot", commitID, filepath.Join(root, "telephone")))
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's go build: %v\n%s", err, out)
	}
	chrooted := func(env []string, args ...string) *proc {
		p := &proc{cmd: exec.Command("/telephone", args...), out: newLineBuf(), errOut: newLineBuf(), done: make(chan struct{})}
		p.cmd.Env, p.cmd.Dir = env, "/"
		// As in the image: chrooted, as the Dockerfile's numeric non-root USER.
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.errOut
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.err = p.cmd.Wait(); close(p.done) }()
		t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.done })
		return p
	}
	if err := os.Chmod(root, 0o755); err != nil { // t.TempDir is 0700: let the non-root user in
		t.Fatal(err)
	}
	entries, err := os.ReadDir(root)
	if err != nil || len(entries) != 1 {
		t.Fatalf("the root must hold only the binary: %v %v", entries, err)
	}

	// The root really is empty: a file every Linux system has is not there.
	noEtc := chrooted([]string{"PLUGBOARD_URL=wss://plugboard.example/telephone/websocket", "TELEPHONE_TOKEN=" + testToken,
		"PLUGBOARD_CA_FILE=/etc/hosts"}, "run")
	if c := noEtc.wait(t); c != exitConfig || !strings.Contains(noEtc.errOut.String(), "PLUGBOARD_CA_FILE") {
		t.Fatalf("/etc/hosts is visible in the root: %d %s", c, noEtc.errOut)
	}

	v := chrooted(nil, "version")
	if c := v.wait(t); c != 0 || !strings.HasPrefix(v.out.String(), "telephone v9.9.9-emptyroot (commit feedfacefeed) go") {
		t.Fatalf("version in the empty root: %d %q %q", c, v.out, v.errOut)
	}

	demo := chrooted(nil, "demo", "--addr", "127.0.0.1:0")
	call := field(t, demo.out.waitLine(t, "READY "), "call_url")
	if c, _, body := get(t, http.MethodGet, call+"/hello", nil); c != 200 || !strings.Contains(body, "came back through the telephone tunnel") {
		t.Errorf("demo in the empty root: %d %q", c, body)
	}
	demo.signal(t, syscall.SIGINT)
	if c := demo.wait(t); c != 0 {
		t.Errorf("demo exit %d: %s", c, demo.errOut)
	}

	// wss:// to a devserver (outside the root) whose certificate only the private CA trusts.
	caFile, certFile, keyFile := writePKI(t, t.TempDir())
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "ca.pem"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	dev := startBinary(t, nil, "devserver", "--addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)
	m := mintWith(t, trusting(t, caFile), field(t, dev.out.waitLine(t, "READY "), "mint_url"))
	backend := okBackend(t, "from the backend")
	tel := chrooted([]string{"PLUGBOARD_URL=" + m.SocketURL, "TELEPHONE_TOKEN=" + m.Token, "PLUGBOARD_CA_FILE=/ca.pem",
		"BACKEND_URL=" + backend.URL, "LOG_FORMAT=json"}, "run")
	tel.errOut.waitLine(t, "joined Plugboard")
	res, err := trusting(t, caFile).Get(m.CallURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "from the backend" {
		t.Errorf("wss:// in the empty root: %d %q", res.StatusCode, body)
	}
	tel.signal(t, syscall.SIGTERM)
	if c := tel.wait(t); c != 0 {
		t.Errorf("run exit %d: %s", c, tel.errOut)
	}
	dev.signal(t, syscall.SIGTERM)
	if c := dev.wait(t); c != 0 {
		t.Errorf("devserver exit %d", c)
	}
}
