package main

import (
	"archive/tar"
	"bytes"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// A two-platform image: an OCI index naming the reference, one image per platform with its own
// binary in a gzip layer, the entrypoint, user and OCI labels; pushed to a registry and read back.
func TestMultiPlatformImage(t *testing.T) {
	dir := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		if err := os.WriteFile(filepath.Join(dir, "manager-linux-"+arch), []byte("binary for "+arch), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o := options{ref: "docker.io/local/tokenkeeper:dev", platforms: []string{"linux/amd64", "linux/arm64"}, entrypoint: "/manager", user: "65532:65532",
		labels: map[string]string{"org.opencontainers.image.revision": "abc123", "org.opencontainers.image.source": "https://github.com/tokenkeeper/tokenkeeper"},
		files:  []string{filepath.Join(dir, "manager-{os}-{arch}") + ":/manager"}}
	idx, err := build(o)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image.tar")
	if err := writeLayoutTar(idx, o.ref, out); err != nil {
		t.Fatal(err)
	}

	// Read the tar back as a layout.
	unpacked := t.TempDir()
	untar(t, out, unpacked)
	p, err := layout.FromPath(unpacked)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := top.IndexManifest()
	if err != nil || len(m.Manifests) != 1 || m.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != o.ref {
		t.Fatalf("index.json: %+v %v; want one entry named %s", m, err, o.ref)
	}
	inner, err := top.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := inner.IndexManifest()
	if err != nil || im.MediaType != types.OCIImageIndex || len(im.Manifests) != 2 || im.Annotations["org.opencontainers.image.revision"] != "abc123" {
		t.Fatalf("image index: %+v %v", im, err)
	}
	for _, d := range im.Manifests {
		img, err := inner.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := img.ConfigFile()
		if d.Platform == nil || d.Platform.Architecture != cfg.Architecture || cfg.OS != "linux" || cfg.Config.Entrypoint[0] != "/manager" ||
			cfg.Config.User != "65532:65532" || cfg.Config.Labels["org.opencontainers.image.source"] == "" {
			t.Errorf("%v: config %+v", d.Platform, cfg)
		}
		layers, _ := img.Layers()
		mt, _ := layers[0].MediaType()
		if len(layers) != 1 || mt != types.OCILayer {
			t.Errorf("%v: %d layers of %s, want one gzip OCI layer", d.Platform, len(layers), mt)
		}
		rc, _ := layers[0].Uncompressed()
		tr := tar.NewReader(rc)
		if h, err := tr.Next(); err != nil || h.Name != "manager" || h.Mode != 0o755 {
			t.Fatalf("%v: layer entry %+v %v", d.Platform, h, err)
		}
		if body, _ := io.ReadAll(tr); string(body) != "binary for "+cfg.Architecture {
			t.Errorf("%s image holds %q", cfg.Architecture, body)
		}
	}

	// Push to a registry and read the same index back.
	reg := httptest.NewServer(registry.New())
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/tokenkeeper:v0.2.0"
	if err := pushIndex(idx, ref, authn.DefaultKeychain, name.Insecure); err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref, name.Insecure)
	pulled, err := remote.Index(r)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if got, _ := pulled.Digest(); got != want {
		t.Errorf("pushed index %s, registry holds %s", want, got)
	}
}

func untar(t *testing.T, file, dir string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if err := os.WriteFile(dest, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
