// Package kubernetesreplicas holds the manifest of examples/kubernetes-replicas and its test.
package kubernetesreplicas

import (
	"bytes"
	"errors"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"
)

// The parts of the Kubernetes objects the test reads.
type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Replicas int `yaml:"replicas"`
		Template struct {
			Spec struct {
				Containers []container `yaml:"containers"`
				Volumes    []struct {
					Name     string    `yaml:"name"`
					EmptyDir *struct{} `yaml:"emptyDir"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type container struct {
	Name  string `yaml:"name"`
	Args  []string
	Env   []envVar `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type envVar struct {
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
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

// load parses every document of the manifest, keyed by kind.
func load(t *testing.T) map[string]object {
	t.Helper()
	raw, err := os.ReadFile("telephone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	objs := map[string]object{}
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("telephone.yaml: %v", err)
		}
		objs[o.Kind] = o
	}
	return objs
}

func TestManifestRunsThreeReplicasFromOneKey(t *testing.T) {
	objs := load(t)
	dep, secret := objs["Deployment"], objs["Secret"]
	if dep.Spec.Replicas != 3 {
		t.Errorf("replicas = %d, want 3", dep.Spec.Replicas)
	}
	var tel *container
	for i, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == "telephone" {
			tel = &dep.Spec.Template.Spec.Containers[i]
		}
	}
	if tel == nil {
		t.Fatal("no telephone container")
	}
	env := map[string]envVar{}
	for _, e := range tel.Env {
		env[e.Name] = e
	}
	for _, name := range []string{"PLUGBOARD_SERVICE_ACCOUNT_KEY", "SECRET_KEY_BASE"} {
		ref := env[name].ValueFrom
		if ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != secret.Metadata.Name || secret.StringData[ref.SecretKeyRef.Key] == "" {
			t.Errorf("%s does not come from the Secret %q", name, secret.Metadata.Name)
		}
	}
	if _, shared := env["TELEPHONE_TOKEN"]; shared {
		t.Error("a TELEPHONE_TOKEN shared by replicas breaks at the first refresh")
	}
	if ref := env["TELEPHONE_INSTANCE_ID"].ValueFrom; ref == nil || ref.FieldRef == nil || ref.FieldRef.FieldPath != "metadata.name" {
		t.Error("TELEPHONE_INSTANCE_ID should be the pod name")
	}
	if !strings.HasPrefix(env["PLUGBOARD_URL"].Value, "wss://") {
		t.Errorf("PLUGBOARD_URL %q", env["PLUGBOARD_URL"].Value)
	}
	checkProbes(t, tel, env["OPS_ADDR"].Value)
	checkStore(t, tel, dep, env["TOKEN_DB_PATH"].Value)
	checkDocumented(t, tel.Env)
}

// checkProbes: /live and /ready on the port OPS_ADDR listens on.
func checkProbes(t *testing.T, tel *container, opsAddr string) {
	t.Helper()
	if tel.LivenessProbe == nil || tel.LivenessProbe.HTTPGet.Path != "/live" ||
		tel.ReadinessProbe == nil || tel.ReadinessProbe.HTTPGet.Path != "/ready" {
		t.Fatal("probes must be GET /live and GET /ready")
	}
	for _, p := range tel.Ports {
		if p.Name == tel.LivenessProbe.HTTPGet.Port && p.Name == tel.ReadinessProbe.HTTPGet.Port &&
			strings.HasSuffix(opsAddr, ":"+strconv.Itoa(p.ContainerPort)) {
			return
		}
	}
	t.Errorf("the probes' port is not the one OPS_ADDR=%q listens on", opsAddr)
}

// checkStore: the token store lives on a per-pod volume, so a restarted container reuses it.
func checkStore(t *testing.T, tel *container, dep object, dbPath string) {
	t.Helper()
	for _, m := range tel.VolumeMounts {
		if !strings.HasPrefix(dbPath, m.MountPath+"/") {
			continue
		}
		for _, v := range dep.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.EmptyDir != nil {
				return
			}
		}
	}
	t.Errorf("TOKEN_DB_PATH %q is not on a per-pod emptyDir volume", dbPath)
}

// checkDocumented: every variable is one the CLI documents in cmd/telephone/README.md.
func checkDocumented(t *testing.T, env []envVar) {
	t.Helper()
	doc, err := os.ReadFile("../../cmd/telephone/README.md")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		known[m[1]] = true
	}
	for _, e := range env {
		if !known[e.Name] {
			t.Errorf("%s is not a documented telephone variable", e.Name)
		}
	}
}
