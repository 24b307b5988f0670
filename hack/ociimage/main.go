// Command ociimage packs static binaries into an OCI image without Docker, with
// go-containerregistry: one gzip layer per platform, an image index over the platforms, OCI
// labels, written as an OCI image-layout tar (for `ctr image import` on the local cluster) and,
// with -push, to a registry (credentials from the usual Docker config).
//
//	go run ./hack/ociimage -ref docker.io/local/tokenkeeper:dev -out bin/tokenkeeper.tar bin/manager:/manager
//	go run ./hack/ociimage -platforms linux/amd64,linux/arm64 -push ghcr.io/me/tokenkeeper:v0.2.0 \
//	    -out bin/tokenkeeper.tar 'bin/manager-{os}-{arch}:/manager'
//
// In SRC, {os} and {arch} are replaced by each platform's.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// options describe one image.
type options struct {
	ref        string
	platforms  []string // os/arch
	entrypoint string
	user       string
	labels     map[string]string
	files      []string // SRC:DEST, SRC may hold {os} and {arch}
}

type labelFlag map[string]string

func (l labelFlag) String() string { return fmt.Sprint(map[string]string(l)) }
func (l labelFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("%q: want KEY=VALUE", v)
	}
	l[k] = val
	return nil
}

func main() {
	o := options{labels: map[string]string{}}
	out := flag.String("out", "bin/image.tar", "the OCI image-layout tar to write")
	push := flag.String("push", "", "also push the image index to this reference (auth from the Docker config)")
	platforms := flag.String("platforms", "linux/"+runtime.GOARCH, "comma-separated os/arch list")
	flag.StringVar(&o.ref, "ref", "docker.io/local/tokenkeeper:dev", "image reference written into the layout")
	flag.StringVar(&o.entrypoint, "entrypoint", "/manager", "entrypoint")
	flag.StringVar(&o.user, "user", "65532:65532", "user the image runs as")
	flag.Var(labelFlag(o.labels), "label", "KEY=VALUE label (repeatable), such as org.opencontainers.image.revision=abc")
	flag.Parse()
	o.platforms, o.files = strings.Split(*platforms, ","), flag.Args()
	if len(o.files) == 0 {
		fmt.Fprintln(os.Stderr, "usage: ociimage [flags] SRC:DEST ...")
		os.Exit(2)
	}
	idx, err := build(o)
	if err == nil {
		err = writeLayoutTar(idx, o.ref, *out)
	}
	if err == nil && *push != "" {
		err = pushIndex(idx, *push, authn.DefaultKeychain)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

// build returns an image index with one image per platform.
func build(o options) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.platforms {
		osName, arch, ok := strings.Cut(strings.TrimSpace(p), "/")
		if !ok {
			return nil, fmt.Errorf("platform %q: want os/arch", p)
		}
		img, err := image(o, osName, arch)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: osName, Architecture: arch}}})
	}
	if len(o.labels) > 0 {
		idx = mutate.Annotations(idx, o.labels).(v1.ImageIndex)
	}
	return idx, nil
}

// image is one platform's image: the files in one gzip layer, the entrypoint, user and labels.
func image(o options, osName, arch string) (v1.Image, error) {
	files := make([]string, len(o.files))
	for i, f := range o.files {
		files[i] = strings.NewReplacer("{os}", osName, "{arch}", arch).Replace(f)
	}
	data, err := layerTar(files)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = osName, arch, v1.Time{Time: time.Unix(0, 0).UTC()}
	cfg.Config.Entrypoint, cfg.Config.User, cfg.Config.Env, cfg.Config.Labels = []string{o.entrypoint}, o.user, []string{"PATH=/"}, o.labels
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return nil, err
	}
	if len(o.labels) > 0 {
		img = mutate.Annotations(img, o.labels).(v1.Image)
	}
	return img, nil
}

// writeLayoutTar writes idx as an OCI image layout in a tar, its entry named ref for importers.
func writeLayoutTar(idx v1.ImageIndex, ref, out string) error {
	dir, err := os.MkdirTemp("", "ociimage-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref, "io.containerd.image.name": ref,
	})); err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path) //nolint:gosec // files of the layout just written
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644) //nolint:gosec // an image archive is not secret
}

// pushIndex pushes idx to ref with credentials from keychain.
func pushIndex(idx v1.ImageIndex, ref string, keychain authn.Keychain, opts ...name.Option) error {
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return err
	}
	return remote.WriteIndex(r, idx, remote.WithAuthFromKeychain(keychain))
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
