//go:build e2e

package e2e_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

var crdNames = []string{"credentials.tokenkeeper.io", "issuers.tokenkeeper.io", "clusterissuers.tokenkeeper.io",
	"tokenpolicies.tokenkeeper.io", "tokenvalidators.tokenkeeper.io"}

func (s *suite) crd(t *testing.T, name string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
	if err := s.c.Get(s.ctx, types.NamespacedName{Name: name}, u); err != nil {
		t.Fatal(err)
	}
	return u
}

// issuerSpecHas reports whether the served Issuer schema has a spec field.
func (s *suite) issuerSpecHas(t *testing.T, field string) bool {
	t.Helper()
	versions, _, _ := unstructured.NestedSlice(s.crd(t, "issuers.tokenkeeper.io").Object, "spec", "versions")
	for _, v := range versions {
		_, found, _ := unstructured.NestedMap(v.(map[string]any), "schema", "openAPIV3Schema", "properties", "spec", "properties", field)
		if found {
			return true
		}
	}
	return false
}

// installPrevious installs chart 0.1.0 (test/e2e/testdata, packaged from the v0.1 tree), whose
// CRDs came from crds/ and so were never upgraded, then adopts those CRDs into the release as the
// README's upgrade notes say, so that the upgrade to this chart brings the new fields.
func (s *suite) installPrevious(t *testing.T) {
	old := filepath.Join(testenv.RepoRoot(), "test", "e2e", "testdata", "tokenkeeper-0.1.0.tgz")
	out, err := exec.CommandContext(s.ctx, s.helm, "install", "tokenkeeper", old, "-n", systemNS, "--create-namespace",
		"--set", "image.pullPolicy=Never").CombinedOutput()
	if err != nil {
		t.Fatalf("helm install of chart 0.1.0: %v\n%s", err, out)
	}
	if s.issuerSpecHas(t, "caBundleFrom") {
		t.Fatal("chart 0.1.0's Issuer CRD already has caBundleFrom: the upgrade would show nothing")
	}
	for _, name := range crdNames {
		patch := fmt.Sprintf(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":"Helm"},"annotations":{"meta.helm.sh/release-name":"tokenkeeper","meta.helm.sh/release-namespace":%q}}}`, systemNS)
		crd := s.crd(t, name)
		if err := s.c.Patch(s.ctx, crd, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			t.Fatalf("adopting CRD %s: %v", name, err)
		}
	}
}

// upgradedCRDs: after helm upgrade the CRDs carry the new field, belong to the release and are
// kept when it is uninstalled.
func (s *suite) upgradedCRDs(t *testing.T) {
	if !s.issuerSpecHas(t, "caBundleFrom") {
		t.Fatal("after helm upgrade the Issuer CRD has no caBundleFrom: CRDs were not upgraded with the chart")
	}
	for _, name := range crdNames {
		crd := s.crd(t, name)
		if crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" || crd.GetLabels()["helm.sh/chart"] != "tokenkeeper-0.2.0" {
			t.Errorf("CRD %s: labels %v, annotations %v; want chart 0.2.0's, kept on uninstall", name, crd.GetLabels(), crd.GetAnnotations())
		}
	}
}
