package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// fromCluster is what DryRunObject.From says of an object read from the cluster.
const fromCluster = "the cluster"

// DryRunObject is one object a dry run read, and where from: "file NAME" or "the cluster".
type DryRunObject struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	From      string `json:"from"`
}

// manifest is what a -f file holds: one Credential and the objects test-issuer reads before the
// cluster's (Issuers, ClusterIssuers, Secrets, ConfigMaps); other kinds are listed as ignored.
type manifest struct {
	credential *v1alpha1.Credential
	objects    map[objectKey]client.Object
	ignored    []string
}

type objectKey struct {
	kind, namespace, name string
}

// fileKinds are the kinds a dry run reads from the file before the cluster.
var fileKinds = map[schema.GroupKind]func() client.Object{
	{Group: v1alpha1.GroupVersion.Group, Kind: "Issuer"}:        func() client.Object { return &v1alpha1.Issuer{} },
	{Group: v1alpha1.GroupVersion.Group, Kind: "ClusterIssuer"}: func() client.Object { return &v1alpha1.ClusterIssuer{} },
	{Group: "", Kind: "Secret"}:                                 func() client.Object { return &corev1.Secret{} },
	{Group: "", Kind: "ConfigMap"}:                              func() client.Object { return &corev1.ConfigMap{} },
}

// parseManifest reads the YAML or JSON documents of data. Namespaced objects without a
// namespace are in ns, as kubectl apply -f would put them.
func parseManifest(data []byte, ns string) (*manifest, error) {
	m := &manifest{objects: map[objectKey]client.Object{}}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
		var tm metav1.TypeMeta
		if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
			continue
		}
		if err := json.Unmarshal(raw, &tm); err != nil {
			return nil, err
		}
		gv, err := schema.ParseGroupVersion(tm.APIVersion)
		if err != nil {
			return nil, err
		}
		gk := schema.GroupKind{Group: gv.Group, Kind: tm.Kind}
		if gk == (schema.GroupKind{Group: v1alpha1.GroupVersion.Group, Kind: "Credential"}) {
			if m.credential != nil {
				return nil, errors.New("holds more than one Credential")
			}
			m.credential = &v1alpha1.Credential{}
			if err := json.Unmarshal(raw, m.credential); err != nil {
				return nil, fmt.Errorf("reading the Credential: %w", err)
			}
			if m.credential.Namespace == "" {
				m.credential.Namespace = ns
			}
			continue
		}
		newObj, ok := fileKinds[gk]
		if !ok {
			var meta struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			_ = json.Unmarshal(raw, &meta) // only for the name in the note
			m.ignored = append(m.ignored, tm.Kind+"/"+meta.Metadata.Name)
			continue
		}
		obj := newObj()
		if err := json.Unmarshal(raw, obj); err != nil {
			return nil, fmt.Errorf("%s: %w", tm.Kind, err)
		}
		if s, ok := obj.(*corev1.Secret); ok {
			// The API server merges stringData into data; a file's Secret is read as it would be stored.
			for k, v := range s.StringData {
				if s.Data == nil {
					s.Data = map[string][]byte{}
				}
				s.Data[k] = []byte(v)
			}
			s.StringData = nil
		}
		if tm.Kind == "ClusterIssuer" {
			obj.SetNamespace("")
		} else if obj.GetNamespace() == "" {
			obj.SetNamespace(ns)
		}
		key := objectKey{tm.Kind, obj.GetNamespace(), obj.GetName()}
		if _, dup := m.objects[key]; dup {
			return nil, fmt.Errorf("holds %s %s twice", tm.Kind, obj.GetName())
		}
		m.objects[key] = obj
	}
	if m.credential == nil {
		return nil, errors.New("holds no Credential")
	}
	return m, nil
}

// fileFirst is a client whose reads of the kinds a manifest may hold answer from the file's
// objects first and from the cluster otherwise, and which records what it read and where from.
// Every other call goes to the cluster.
type fileFirst struct {
	client.Client
	file    string
	objects map[objectKey]client.Object

	mu   sync.Mutex
	read []DryRunObject
}

// Get implements client.Reader.
func (f *fileFirst) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	kind := kindOf(obj)
	if kind == "" {
		return f.Client.Get(ctx, key, obj, opts...)
	}
	if src, ok := f.objects[objectKey{kind, key.Namespace, key.Name}]; ok {
		b, err := json.Marshal(src)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, obj); err != nil {
			return err
		}
		f.record(kind, key, "file "+f.file)
		return nil
	}
	if err := f.Client.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	f.record(kind, key, fromCluster)
	return nil
}

func (f *fileFirst) record(kind string, key client.ObjectKey, from string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := DryRunObject{Kind: kind, Namespace: key.Namespace, Name: key.Name, From: from}
	for _, r := range f.read {
		if r == o {
			return
		}
	}
	f.read = append(f.read, o)
}

// objectsRead is what f read, issuers first, then by kind and name.
func (f *fileFirst) objectsRead() []DryRunObject {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := append([]DryRunObject(nil), f.read...)
	rank := func(k string) int {
		switch k {
		case "Issuer", "ClusterIssuer":
			return 0
		case "Secret":
			return 1
		}
		return 2
	}
	sort.SliceStable(out, func(i, j int) bool {
		if rank(out[i].Kind) != rank(out[j].Kind) {
			return rank(out[i].Kind) < rank(out[j].Kind)
		}
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	return out
}

// kindOf is obj's kind when a manifest may hold it, else "". Metadata-only reads (the versioned
// reader's resourceVersion checks) go to the cluster: a miss there only means a full read.
func kindOf(obj client.Object) string {
	var kind string
	switch obj.(type) {
	case *v1alpha1.Issuer:
		kind = "Issuer"
	case *v1alpha1.ClusterIssuer:
		kind = "ClusterIssuer"
	case *corev1.Secret:
		kind = "Secret"
	case *corev1.ConfigMap:
		kind = "ConfigMap"
	}
	return kind
}
