package demo_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/demo"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer/issuertest"
)

// Every Credential's Secret is mounted by the app, which calls a URL each issuer serves; the
// manifests are valid YAML documents.
func TestIssuersAndManifests(t *testing.T) {
	d, err := demo.Start("127.0.0.1", 0, time.Minute, "demo")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var creds []*v1alpha1.Credential
	var app *corev1.Pod
	for _, o := range d.Objects {
		switch o := o.(type) {
		case *v1alpha1.Credential:
			creds = append(creds, o)
		case *corev1.Pod:
			app = o
		}
	}
	if len(creds) != len(issuertest.Flavors) || app == nil {
		t.Fatalf("%d Credentials and app %v", len(creds), app != nil)
	}
	mounted := map[string]bool{}
	for _, v := range app.Spec.Volumes {
		if v.Secret != nil {
			mounted[v.Secret.SecretName] = true
		}
	}
	for _, c := range creds {
		if !mounted[c.Spec.SecretName] {
			t.Errorf("Secret %s of Credential %s is not mounted", c.Spec.SecretName, c.Name)
		}
	}
	targets := strings.Fields(app.Spec.Containers[0].Env[1].Value)
	if len(targets) != len(d.Servers) {
		t.Fatalf("TARGETS %q", targets)
	}
	for i, target := range targets {
		parts := strings.SplitN(target, "=", 3)
		resp, err := d.Servers[i].Client().Get(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", parts[1], resp.StatusCode)
		}
	}
	manifests, err := d.YAML()
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split("\n"+string(manifests), "\n---\n")[1:]
	if len(docs) != len(d.Objects) {
		t.Fatalf("%d documents for %d objects", len(docs), len(d.Objects))
	}
	for _, doc := range docs {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil || m["kind"] == nil || m["apiVersion"] == nil {
			t.Errorf("document without kind/apiVersion (%v): %.80s", err, doc)
		}
	}
}
