// Command ociimage packs static binaries into an OCI image-layout tar without Docker, for
// `ctr image import` on the local cluster and for registries via skopeo or crane.
//
//	go run ./hack/ociimage -ref docker.io/local/tokenkeeper:dev -out bin/tokenkeeper.tar bin/manager:/manager
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// Media types of the OCI image specification.
const (
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar"
)

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func main() {
	ref := flag.String("ref", "docker.io/local/tokenkeeper:dev", "image reference written into the layout")
	out := flag.String("out", "bin/image.tar", "output tar")
	entrypoint := flag.String("entrypoint", "/manager", "entrypoint")
	user := flag.String("user", "65532:65532", "user the image runs as")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: ociimage [flags] SRC:DEST ...")
		os.Exit(2)
	}
	if err := build(*ref, *out, *entrypoint, *user, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func build(ref, out, entrypoint, user string, files []string) error {
	layer, err := layerTar(files)
	if err != nil {
		return err
	}
	blobs := map[string][]byte{}
	add := func(media string, data []byte) descriptor {
		sum := sha256.Sum256(data)
		d := descriptor{MediaType: media, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: len(data)}
		blobs[d.Digest] = data
		return d
	}
	layerDesc := add(mediaLayer, layer)
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux", "created": time.Unix(0, 0).UTC(),
		"config": map[string]any{"Entrypoint": []string{entrypoint}, "User": user, "Env": []string{"PATH=/"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDesc.Digest}},
	})
	if err != nil {
		return err
	}
	configDesc := add(mediaConfig, config)
	manifest, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mediaManifest, "config": configDesc, "layers": []descriptor{layerDesc}})
	if err != nil {
		return err
	}
	manifestDesc := add(mediaManifest, manifest)
	manifestDesc.Annotations = map[string]string{"org.opencontainers.image.ref.name": ref, "io.containerd.image.name": ref}
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mediaIndex, "manifests": []descriptor{manifestDesc}})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := write("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := write("index.json", index); err != nil {
		return err
	}
	for digest, data := range blobs {
		if err := write("blobs/sha256/"+strings.TrimPrefix(digest, "sha256:"), data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644) //nolint:gosec // an image archive is not secret
}

// layerTar packs SRC:DEST pairs as executable files owned by root.
func layerTar(files []string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		src, dest, ok := strings.Cut(f, ":")
		if !ok {
			return nil, fmt.Errorf("%q: want SRC:DEST", f)
		}
		data, err := os.ReadFile(src) //nolint:gosec // the caller names the files to pack
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Name: strings.TrimPrefix(dest, "/"), Mode: 0o755, Size: int64(len(data)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
