package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/joho/godotenv"
	"go.yaml.in/yaml/v2"

	"github.com/verastack/telephone/telephonetest"
)

// The deployment examples are checked here, where the configuration table lives: whatever
// environment they give telephone must be a valid configuration for `telephone run`.

// k8sObject is the part of a Kubernetes object the example uses. Decoding is strict, so a
// misspelt field fails the test.
type k8sObject struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   k8sMeta           `yaml:"metadata"`
	Type       string            `yaml:"type"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		// PersistentVolumeClaim
		AccessModes []string `yaml:"accessModes"`
		Resources   struct {
			Requests map[string]string `yaml:"requests"`
		} `yaml:"resources"`
		// Deployment
		Replicas *int `yaml:"replicas"`
		Strategy struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata k8sMeta `yaml:"metadata"`
			Spec     k8sPod  `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sMeta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type k8sPod struct {
	AutomountServiceAccountToken  *bool `yaml:"automountServiceAccountToken"`
	TerminationGracePeriodSeconds int   `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot   bool `yaml:"runAsNonRoot"`
		RunAsUser      int  `yaml:"runAsUser"`
		RunAsGroup     int  `yaml:"runAsGroup"`
		FSGroup        int  `yaml:"fsGroup"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Containers []k8sContainer `yaml:"containers"`
	Volumes    []struct {
		Name                  string `yaml:"name"`
		PersistentVolumeClaim *struct {
			ClaimName string `yaml:"claimName"`
		} `yaml:"persistentVolumeClaim"`
		EmptyDir map[string]string `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type k8sContainer struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             bool  `yaml:"runAsNonRoot"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	TimeoutSeconds   int `yaml:"timeoutSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

// readK8s decodes every document of a manifest strictly, by kind.
func readK8s(t *testing.T, path string) map[string]k8sObject {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.SetStrict(true)
	out := map[string]k8sObject{}
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if _, dup := out[o.Kind]; dup || o.APIVersion == "" || o.Metadata.Name == "" {
			t.Fatalf("%s: %s %q: duplicate, or no apiVersion or name", path, o.Kind, o.Metadata.Name)
		}
		out[o.Kind] = o
	}
}

// validTokenFor stands in for a placeholder token: the examples cannot hold a real one.
var validTokenFor = shapedToken("example")

func TestKubernetesExample(t *testing.T) {
	t.Parallel()
	objs := readK8s(t, "../../examples/kubernetes/telephone.yaml")
	secret, pvc, dep := objs["Secret"], objs["PersistentVolumeClaim"], objs["Deployment"]
	if secret.APIVersion != "v1" || pvc.APIVersion != "v1" || dep.APIVersion != "apps/v1" || len(objs) != 3 {
		t.Fatalf("want a v1 Secret, a v1 PersistentVolumeClaim and an apps/v1 Deployment, got %v", objs)
	}
	if r := dep.Spec.Replicas; r == nil || *r != 1 || dep.Spec.Strategy.Type != "Recreate" {
		t.Error("one replica per token, replaced with the Recreate strategy")
	}
	for k, v := range dep.Spec.Selector.MatchLabels {
		if dep.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the selector %s=%s does not match the pod template", k, v)
		}
	}
	pod := dep.Spec.Template.Spec
	psc := pod.SecurityContext
	if !psc.RunAsNonRoot || psc.RunAsUser == 0 || psc.SeccompProfile.Type != "RuntimeDefault" ||
		pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("pod security context: %+v, automount %v", psc, pod.AutomountServiceAccountToken)
	}
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
		if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName != pvc.Metadata.Name {
			t.Errorf("volume %s claims %q, the manifest's claim is %q", v.Name, v.PersistentVolumeClaim.ClaimName, pvc.Metadata.Name)
		}
	}
	var tel *k8sContainer
	for i, c := range pod.Containers {
		sc := c.SecurityContext
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !sc.ReadOnlyRootFilesystem ||
			len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("container %s: security context %+v", c.Name, sc)
		}
		if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
			t.Errorf("container %s: resources %+v", c.Name, c.Resources)
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				t.Errorf("container %s mounts the unknown volume %s", c.Name, m.Name)
			}
		}
		if c.Name == "telephone" {
			tel = &pod.Containers[i]
		}
	}
	if tel == nil {
		t.Fatal("no telephone container")
	}
	env := containerEnv(t, tel, secret, nil)
	env["TELEPHONE_TOKEN"] = validTokenFor
	cfg := checkExampleConfig(t, env, nil, tel.Args...)
	checkProbes(t, tel, cfg)
	if !mountedUnder(cfg.TokenDBPath, tel) {
		t.Errorf("TOKEN_DB_PATH %s is not on a mounted volume", cfg.TokenDBPath)
	}
	if time.Duration(pod.TerminationGracePeriodSeconds)*time.Second <= cfg.ShutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %d must exceed SHUTDOWN_TIMEOUT %v", pod.TerminationGracePeriodSeconds, cfg.ShutdownTimeout)
	}
}

// TestKubernetesReplicasExample checks examples/kubernetes-replicas: three replicas whose
// telephones share one service-account key from the Secret (no shared token), name their
// tokens after the pod, keep their token store on a per-pod volume, and are probed on /live
// and /ready of the ops port; the environment is a valid `telephone run` configuration.
func TestKubernetesReplicasExample(t *testing.T) {
	t.Parallel()
	objs := readK8s(t, "../../examples/kubernetes-replicas/telephone.yaml")
	secret, dep := objs["Secret"], objs["Deployment"]
	if r := dep.Spec.Replicas; r == nil || *r != 3 || len(objs) != 2 || secret.Metadata.Name == "" {
		t.Fatalf("want a Secret and a Deployment with replicas: 3, got %d objects, replicas %v", len(objs), dep.Spec.Replicas)
	}
	pod := dep.Spec.Template.Spec
	var tel *k8sContainer
	for i := range pod.Containers {
		if pod.Containers[i].Name == "telephone" {
			tel = &pod.Containers[i]
		}
	}
	if tel == nil {
		t.Fatal("no telephone container")
	}
	env := containerEnv(t, tel, secret, func(name, fieldPath string) string {
		if name != "TELEPHONE_INSTANCE_ID" || fieldPath != "metadata.name" {
			t.Errorf("%s from %s: only TELEPHONE_INSTANCE_ID should come from the pod name", name, fieldPath)
		}
		return "my-service-7d9f-abcde"
	})
	if _, shared := env["TELEPHONE_TOKEN"]; shared {
		t.Error("a TELEPHONE_TOKEN shared by replicas breaks at the first refresh")
	}
	cfg := checkExampleConfig(t, env, nil, tel.Args...)
	if cfg.ServiceAccountKey == "" || cfg.InstanceID != "my-service-7d9f-abcde" || cfg.PathID == "" {
		t.Errorf("vending settings: key set %v, instance %q, path %q", cfg.ServiceAccountKey != "", cfg.InstanceID, cfg.PathID)
	}
	checkProbes(t, tel, cfg)
	perPod := map[string]bool{}
	for _, v := range pod.Volumes {
		perPod[v.Name] = v.EmptyDir != nil
	}
	stored := false
	for _, m := range tel.VolumeMounts {
		stored = stored || perPod[m.Name] && strings.HasPrefix(cfg.TokenDBPath, strings.TrimSuffix(m.MountPath, "/")+"/")
	}
	if !stored {
		t.Errorf("TOKEN_DB_PATH %s is not on a per-pod emptyDir volume", cfg.TokenDBPath)
	}
	if time.Duration(pod.TerminationGracePeriodSeconds)*time.Second <= cfg.ShutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %d must exceed SHUTDOWN_TIMEOUT %v", pod.TerminationGracePeriodSeconds, cfg.ShutdownTimeout)
	}
}

// containerEnv is the environment of container c: plain values, values from the Secret (which
// must hold them) and, through fromField (nil: none allowed), values from pod fields.
func containerEnv(t *testing.T, c *k8sContainer, secret k8sObject, fromField func(name, fieldPath string) string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if ref.Name != secret.Metadata.Name || secret.StringData[ref.Key] == "" {
				t.Errorf("%s refers to %s/%s, which the Secret does not hold", e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = secret.StringData[ref.Key]
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && fromField != nil:
			env[e.Name] = fromField(e.Name, e.ValueFrom.FieldRef.FieldPath)
		case e.ValueFrom != nil:
			t.Errorf("%s: unexpected valueFrom %+v", e.Name, e.ValueFrom)
		default:
			env[e.Name] = e.Value
		}
	}
	return env
}

// checkProbes checks that the liveness and readiness probes GET /live and /ready on the
// operations port of cfg.
func checkProbes(t *testing.T, c *k8sContainer, cfg Config) {
	t.Helper()
	_, opsPort, _ := net.SplitHostPort(cfg.opsAddr())
	ports := map[string]string{}
	for _, p := range c.Ports {
		ports[p.Name] = strconv.Itoa(p.ContainerPort)
	}
	for _, p := range []struct {
		probe *k8sProbe
		path  string
	}{{c.LivenessProbe, "/live"}, {c.ReadinessProbe, "/ready"}} {
		if p.probe == nil || p.probe.HTTPGet.Path != p.path || ports[p.probe.HTTPGet.Port] != opsPort {
			t.Errorf("probe %s: %+v, want GET %s on the ops port %s", p.path, p.probe, p.path, opsPort)
		}
	}
}

func mountedUnder(path string, c *k8sContainer) bool {
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}

// checkExampleConfig loads env (and files, by name) as `telephone run args` would and requires
// a configuration without errors or warnings.
func checkExampleConfig(t *testing.T, env, files map[string]string, args ...string) Config {
	t.Helper()
	if len(args) > 0 && args[0] == "run" {
		args = args[1:]
	}
	cfg, errs := loadConfig(configInput{Env: env, Args: args, ReadFile: fakeFiles(files)})
	if len(errs) > 0 || len(cfg.Warnings) > 0 {
		t.Fatalf("the example's configuration: errors %v, warnings %v", errs, cfg.Warnings)
	}
	return cfg
}

// unit is a parsed systemd unit: section -> directive -> values in order.
type unit map[string]map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u, section := unit{}, ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a directive: %q", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func TestSystemdExample(t *testing.T) {
	t.Parallel()
	const dir = "../../examples/systemd"
	u := readUnit(t, filepath.Join(dir, "telephone.service"))
	svc := u["Service"]
	for k, want := range map[string]string{
		"DynamicUser": "yes", "StateDirectory": "telephone", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
		"Restart": "on-failure", "RestartPreventExitStatus": "2", "ProtectHome": "yes", "PrivateTmp": "yes",
		"CapabilityBoundingSet": "", "KillSignal": "SIGTERM",
	} {
		if got := svc[k]; len(got) != 1 || got[0] != want {
			t.Errorf("[Service] %s = %q, want %q", k, got, want)
		}
	}
	if len(u["Install"]["WantedBy"]) != 1 || len(u["Unit"]["After"]) != 1 {
		t.Errorf("[Unit] After and [Install] WantedBy are needed: %v", u)
	}

	// The environment the unit gives telephone: EnvironmentFile (the example secrets, with a
	// well-formed token in place of the placeholder), then Environment=, then --env.
	if f := svc["EnvironmentFile"]; len(f) != 1 || f[0] != "/etc/telephone/telephone.env" {
		t.Fatalf("EnvironmentFile = %q", f)
	}
	env, err := godotenv.Read(filepath.Join(dir, "telephone.env"))
	if err != nil {
		t.Fatal(err)
	}
	env["TELEPHONE_TOKEN"] = validTokenFor
	for _, kv := range svc["Environment"] {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	live, err := os.ReadFile(filepath.Join(dir, "live.env"))
	if err != nil {
		t.Fatal(err)
	}
	argv := strings.Fields(svc["ExecStart"][0])
	if argv[0] != "/usr/local/bin/telephone" {
		t.Fatalf("ExecStart = %q", argv)
	}
	cfg := checkExampleConfig(t, env, map[string]string{"/etc/telephone/live.env": string(live)}, argv[1:]...)
	if cfg.EnvFile != "/etc/telephone/live.env" || cfg.source["BACKEND_URL"] != "/etc/telephone/live.env" {
		t.Errorf("the live settings must come from --env /etc/telephone/live.env (SIGHUP re-reads it): %v", cfg.source)
	}
	if !strings.HasPrefix(cfg.TokenDBPath, "/var/lib/telephone/") {
		t.Errorf("TOKEN_DB_PATH %s is not in the StateDirectory", cfg.TokenDBPath)
	}
	if stop, err := time.ParseDuration(svc["TimeoutStopSec"][0]); err != nil || stop <= cfg.ShutdownTimeout {
		t.Errorf("TimeoutStopSec %v must exceed SHUTDOWN_TIMEOUT %v", svc["TimeoutStopSec"], cfg.ShutdownTimeout)
	}

	t.Run("systemd-analyze verify", func(t *testing.T) {
		analyze, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze is not installed; the directives were checked above")
		}
		// verify checks that ExecStart exists: point it at the test's binary.
		unitFile := filepath.Join(t.TempDir(), "telephone.service")
		text, err := os.ReadFile(filepath.Join(dir, "telephone.service"))
		if err != nil {
			t.Fatal(err)
		}
		text = bytes.ReplaceAll(text, []byte("/usr/local/bin/telephone"), []byte(binPath))
		if err := os.WriteFile(unitFile, text, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(analyze, "verify", unitFile).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})
}

// TestGrafanaDashboard checks the dashboard against a live /metrics: every metric a panel or a
// variable queries exists, and every telephone_* metric is on the dashboard. The tunnel serves
// a request, refuses one over the rate limit and refreshes its short-lived token, so that the
// labelled series exist too.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../examples/grafana/telephone.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil || dash.Title == "" || dash.UID == "" {
		t.Fatalf("dashboard: %v (title %q, uid %q)", err, dash.Title, dash.UID)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			exprs = append(exprs, fmt.Sprint(q["query"]))
		}
	}
	queried := map[string]bool{}
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			queried[name] = true
		}
	}

	srv := newPlugboard(t, telephonetest.WithTokenLifetime(2*time.Second))
	tu := startTunnel(t, srv, okBackend(t, "ok").URL, "RATE_LIMIT", "0.001", "RATE_BURST", "1")
	call := srv.CallURL(tu.tok.PathID) + "/"
	if c, _, _ := get(t, http.MethodGet, call, nil); c != 200 {
		t.Fatalf("first request: %d", c)
	}
	if c, _, _ := get(t, http.MethodGet, call, nil); c != http.StatusTooManyRequests {
		t.Fatalf("second request: %d, want 429 over the rate limit", c)
	}
	var metrics string
	eventually(t, "a token refresh", func() bool {
		_, _, metrics = get(t, http.MethodGet, tu.ops.URL+"/metrics", nil)
		return strings.Contains(metrics, "telephone_token_refreshes_total{")
	})
	exported := map[string]bool{}
	for _, line := range strings.Split(metrics, "\n") {
		if name := metricName.FindString(line); name != "" && strings.HasPrefix(line, name) {
			exported[name] = true
		}
	}
	for name := range queried {
		if !exported[name] {
			t.Errorf("the dashboard queries %s, which /metrics does not export", name)
		}
	}
	for name := range exported {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if strings.HasPrefix(name, "telephone_") && !queried[name] && !queried[base+"_bucket"] {
			t.Errorf("%s is exported but not on the dashboard", name)
		}
	}
}

// metricName matches the metric names of the telephone, Go and process collectors.
var metricName = regexp.MustCompile(`\b(?:telephone|go|process)_[a-z0-9_]+\b`)
