package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// The layout holds an index naming the reference, and every blob matches its digest.
func TestLayout(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "manager")
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image.tar")
	if err := build("docker.io/local/tokenkeeper:dev", out, "/manager", "65532:65532", []string{bin + ":/manager"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v %s", err, files["index.json"])
	}
	if index.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "docker.io/local/tokenkeeper:dev" {
		t.Fatalf("reference not recorded: %v", index.Manifests[0].Annotations)
	}
	for name, b := range files {
		if filepath.Dir(name) != "blobs/sha256" {
			continue
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != filepath.Base(name) {
			t.Errorf("blob %s does not match its digest", name)
		}
	}
	if len(files) != 5 { // oci-layout, index.json, manifest, config, layer
		t.Errorf("%d files in the layout, want 5", len(files))
	}
}
