// Package crd_test proves, against a real kube-apiserver, that the CRD schemas accept every
// sample and reject malformed manifests with a message naming the field.
package crd_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/tokenkeeper/tokenkeeper/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := env.Client.Create(t.Context(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

func decodeAll(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("decoding: %v", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

func TestSamplesAreAccepted(t *testing.T) {
	ensureNamespace(t, "shop")
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range decodeAll(t, data) {
			t.Run(filepath.Base(f)+"/"+obj.GetKind()+"/"+obj.GetName(), func(t *testing.T) {
				if err := env.Client.Create(t.Context(), obj); err != nil {
					t.Fatalf("sample rejected: %v", err)
				}
				kinds[obj.GetKind()]++
			})
		}
	}
	// One Issuer or ClusterIssuer and one Credential for each of the five seeds and for OAuth2.
	if got := kinds["Issuer"] + kinds["ClusterIssuer"]; got < 6 {
		t.Errorf("samples hold %d issuers, want at least 6 (five seeds and OAuth2)", got)
	}
	for kind, want := range map[string]int{"Credential": 6, "TokenPolicy": 1, "TokenValidator": 1} {
		if kinds[kind] < want {
			t.Errorf("samples hold %d %s, want at least %d", kinds[kind], kind, want)
		}
	}
}

const credentialBase = `
apiVersion: tokenkeeper.io/v1alpha1
kind: Credential
metadata: {name: bad, namespace: crd-test}
spec:
  issuerRef: {name: some-issuer}
  secretName: some-token
`

const issuerBase = `
apiVersion: tokenkeeper.io/v1alpha1
kind: Issuer
metadata: {name: bad, namespace: crd-test}
spec:
  url: https://issuer.example.com/login
  json: {}
`

// merge overlays patch (YAML) onto base (YAML), recursively, so each case shows only what it breaks.
func merge(t *testing.T, base, patch string) *unstructured.Unstructured {
	t.Helper()
	var b, p map[string]any
	if err := yaml.Unmarshal([]byte(base), &b); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(patch), &p); err != nil {
		t.Fatal(err)
	}
	var overlay func(dst, src map[string]any)
	overlay = func(dst, src map[string]any) {
		for k, v := range src {
			if sv, ok := v.(map[string]any); ok {
				if dv, ok := dst[k].(map[string]any); ok {
					overlay(dv, sv)
					continue
				}
			}
			if v == nil {
				delete(dst, k)
				continue
			}
			dst[k] = v
		}
	}
	overlay(b, p)
	return &unstructured.Unstructured{Object: b}
}

func TestInvalidManifestsAreRejected(t *testing.T) {
	ensureNamespace(t, "crd-test")
	cases := map[string]struct {
		reason    string
		base      string
		patch     string
		wantField string
		wantMsg   string
	}{
		"CredentialTwoLogins": {
			reason:    "A Credential logs in one way; two login sources are ambiguous.",
			base:      credentialBase,
			patch:     `spec: {password: {secretRef: {name: a}}, apiKey: {secretRef: {name: b}}}`,
			wantField: "spec",
			wantMsg:   "set exactly one login: password, apiKey, clientCredentials, refreshToken, jwtBearer, privateKey, githubApp or serviceAccount",
		},
		"JWTBearerTwoKeys": {
			reason:    "An assertion is signed with one key: a key file and a PEM key are ambiguous.",
			base:      credentialBase,
			patch:     `spec: {jwtBearer: {secretRef: {name: a}, serviceAccountKeyKey: key.json, privateKeyKey: tls.key, issuer: me}}`,
			wantField: "spec.jwtBearer",
			wantMsg:   "set one of serviceAccountKeyKey or privateKeyKey",
		},
		"JWTBearerPEMKeyWithoutIssuer": {
			reason:    "Only a key file names the assertion's issuer; a PEM key needs it said.",
			base:      credentialBase,
			patch:     `spec: {jwtBearer: {secretRef: {name: a}, privateKeyKey: tls.key}}`,
			wantField: "spec.jwtBearer",
			wantMsg:   "issuer is required with privateKeyKey",
		},
		"JWTBearerAssertionTooLong": {
			reason:    "Issuers refuse assertions valid for more than an hour; a captured one would be usable that long.",
			base:      credentialBase,
			patch:     `spec: {jwtBearer: {secretRef: {name: a}, serviceAccountKeyKey: key.json, assertionLifetime: 2h}}`,
			wantField: "spec.jwtBearer.assertionLifetime",
			wantMsg:   "assertionLifetime must be between 1m and 1h",
		},
		"CertificateWithoutPrivateKey": {
			reason:    "A certificate thumbprint only goes with an assertion signed by its key.",
			base:      credentialBase,
			patch:     `spec: {clientCredentials: {secretRef: {name: a}, certificateKey: tls.crt}}`,
			wantField: "spec.clientCredentials",
			wantMsg:   "certificateKey and assertionAudience need privateKeyKey",
		},
		"CredentialNoLogin": {
			reason:    "A Credential without a login source can never get a token.",
			base:      credentialBase,
			patch:     `spec: {}`,
			wantField: "spec",
			wantMsg:   "set exactly one login",
		},
		"CredentialRenewBeforeNotShorterThanSession": {
			reason:    "Renewing before the session even starts would loop forever.",
			base:      credentialBase,
			patch:     `spec: {password: {secretRef: {name: a}}, sessionDuration: 1h, renewal: {renewBefore: 2h}}`,
			wantField: "spec.renewal.renewBefore",
			wantMsg:   "renewal.renewBefore must be shorter than sessionDuration",
		},
		"CredentialRenewBeforeAndPercent": {
			reason:    "Two renewal rules would contradict each other.",
			base:      credentialBase,
			patch:     `spec: {password: {secretRef: {name: a}}, renewal: {renewBefore: 5m, beforeExpiryPercent: 30}}`,
			wantField: "spec.renewal",
			wantMsg:   "set at most one of renewBefore or beforeExpiryPercent",
		},
		"CredentialPercentTooHigh": {
			reason:    "Renewing with 95% of the lifetime left renews almost continuously.",
			base:      credentialBase,
			patch:     `spec: {password: {secretRef: {name: a}}, renewal: {beforeExpiryPercent: 95}}`,
			wantField: "spec.renewal.beforeExpiryPercent",
			wantMsg:   "should be less than or equal to 90",
		},
		"CredentialNegativeSession": {
			reason:    "Durations must be positive.",
			base:      credentialBase,
			patch:     `spec: {password: {secretRef: {name: a}}, sessionDuration: -5m}`,
			wantField: "spec.sessionDuration",
			wantMsg:   "sessionDuration must be between 10s and 8760h",
		},
		"CredentialBadSecretName": {
			reason:    "The target Secret name must be a valid object name, or every write fails later.",
			base:      credentialBase,
			patch:     `spec: {password: {secretRef: {name: a}}, secretName: Bad_Name}`,
			wantField: "spec.secretName",
			wantMsg:   "should match",
		},
		"CredentialUnknownIssuerKind": {
			reason:    "Only Issuer and ClusterIssuer can issue tokens.",
			base:      credentialBase,
			patch:     `spec: {password: {secretRef: {name: a}}, issuerRef: {kind: Secret, name: x}}`,
			wantField: "spec.issuerRef.kind",
			wantMsg:   `Unsupported value: "Secret"`,
		},
		"CredentialMissingSecretName": {
			reason:    "Without a target Secret the token has nowhere to go.",
			base:      credentialBase,
			patch:     `spec: {password: {secretRef: {name: a}}, secretName: null}`,
			wantField: "spec.secretName",
			wantMsg:   "Required value",
		},
		"IssuerPlainHTTP": {
			reason:    "Passwords must not cross the network in clear text unless explicitly allowed.",
			base:      issuerBase,
			patch:     `spec: {url: "http://issuer.example.com/login"}`,
			wantField: "spec.url",
			wantMsg:   "url must use https; set allowInsecureHTTP to allow plain http",
		},
		"IssuerPlainHTTPRevoke": {
			reason:    "Every endpoint gets a token; each must use https.",
			base:      issuerBase,
			patch:     `spec: {revoke: {url: "http://issuer.example.com/logout"}}`,
			wantField: "spec.revoke.url",
			wantMsg:   "revoke.url must use https",
		},
		"IssuerNotAURL": {
			reason:    "A relative or garbled URL cannot be called.",
			base:      issuerBase,
			patch:     `spec: {url: "issuer.example.com/login"}`,
			wantField: "spec.url",
			wantMsg:   "must be an absolute http or https URL",
		},
		"IssuerTwoProtocols": {
			reason:    "An issuer speaks one protocol.",
			base:      issuerBase,
			patch:     `spec: {oauth2: {scopes: [a]}}`,
			wantField: "spec",
			wantMsg:   "set at most one protocol: json, oauth2, selfSigned or githubApp",
		},
		"IssuerURLWithoutProtocol": {
			reason:    "Without a protocol there is no way to log in at the URL.",
			base:      issuerBase,
			patch:     `spec: {json: null}`,
			wantField: "spec.url",
			wantMsg:   "url needs a protocol: set json, oauth2 or githubApp",
		},
		"IssuerAuthorizationHeader": {
			reason:    "tokenkeeper sets Authorization; an extra header must not override it.",
			base:      issuerBase,
			patch:     `spec: {headers: [{name: Authorization, value: x}]}`,
			wantField: "spec.headers[0].name",
			wantMsg:   "Authorization, Content-Type, Content-Length and Host are set by tokenkeeper",
		},
		"IssuerHeaderValueAndValueFrom": {
			reason:    "A header value comes from one place.",
			base:      issuerBase,
			patch:     `spec: {headers: [{name: Api-Key, value: x, valueFrom: {secretKeyRef: {name: s, key: k}}}]}`,
			wantField: "spec.headers[0]",
			wantMsg:   "set exactly one of value or valueFrom",
		},
		"IssuerCrossNamespaceSecret": {
			reason:    "A namespaced Issuer must not read Secrets of other namespaces.",
			base:      issuerBase,
			patch:     `spec: {headers: [{name: Api-Key, valueFrom: {secretKeyRef: {name: s, key: k, namespace: kube-system}}}]}`,
			wantField: "",
			wantMsg:   "an Issuer reads Secrets in its own namespace only",
		},
		"IssuerURLWithPassword": {
			reason:    "A password in the URL ends up in status and logs.",
			base:      issuerBase,
			patch:     `spec: {url: "https://user:hunter2@login.example.com/token"}`,
			wantField: "spec.url",
			wantMsg:   "must not hold a user name or password",
		},
		"SDSNoServiceAccounts": {
			reason:    "An SDS delivery nobody may fetch is a mistake, not a grant.",
			base:      credentialBase,
			patch:     `spec: {delivery: {sds: {serviceAccounts: []}}}`,
			wantField: "spec.delivery.sds.serviceAccounts",
			wantMsg:   "should have at least 1 items",
		},
		"SDSServiceAccountOfAnotherNamespace": {
			reason:    "A Credential grants only ServiceAccounts of its own namespace: namespace/name is not a name.",
			base:      credentialBase,
			patch:     `spec: {delivery: {sds: {serviceAccounts: [other/envoy]}}}`,
			wantField: "spec.delivery.sds.serviceAccounts[0]",
			wantMsg:   "should match",
		},
		"SDSTooManyServiceAccounts": {
			reason:    "The list is bounded, like every list a tenant writes.",
			base:      credentialBase,
			patch:     `spec: {delivery: {sds: {serviceAccounts: [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q]}}}`,
			wantField: "spec.delivery.sds.serviceAccounts",
			wantMsg:   "must have at most 16 items",
		},
		"SDSDuplicateServiceAccount": {
			reason:    "The list is a set.",
			base:      credentialBase,
			patch:     `spec: {delivery: {sds: {serviceAccounts: [envoy, envoy]}}}`,
			wantField: "spec.delivery.sds.serviceAccounts[1]",
			wantMsg:   "Duplicate value",
		},
		"IssuerHeaderNamedToken": {
			reason:    "Header values travel in the token Secret under their lower-cased name: Token would replace the token.",
			base:      issuerBase,
			patch:     `spec: {headers: [{name: Token, value: x}]}`,
			wantField: "spec.headers[0].name",
			wantMsg:   "would replace that key of the token Secret",
		},
		"IssuerZeroDefaultLifetime": {
			reason:    "A zero lifetime renews constantly.",
			base:      issuerBase,
			patch:     `spec: {defaultLifetime: 0s}`,
			wantField: "spec.defaultLifetime",
			wantMsg:   "defaultLifetime must be positive",
		},
		"IssuerZeroTimeout": {
			reason:    "A zero timeout fails every request.",
			base:      issuerBase,
			patch:     `spec: {timeout: 0s}`,
			wantField: "spec.timeout",
			wantMsg:   "timeout must be between 1s and 5m",
		},
		"IssuerBadTokenType": {
			reason:    "The scheme is written into an HTTP header; spaces would corrupt it.",
			base:      issuerBase,
			patch:     `spec: {tokenType: "Bearer x"}`,
			wantField: "spec.tokenType",
			wantMsg:   "should match",
		},
		"IssuerBadResponsePath": {
			reason:    "A response path with empty segments can never match.",
			base:      issuerBase,
			patch:     `spec: {json: {response: {token: "data..token"}}}`,
			wantField: "spec.json.response.token",
			wantMsg:   "should match",
		},
		"TokenPolicyDefaultOverMax": {
			reason:    "A default above the maximum would reject every silent Credential.",
			base:      "apiVersion: tokenkeeper.io/v1alpha1\nkind: TokenPolicy\nmetadata: {name: bad}\nspec: {}",
			patch:     `spec: {sessionDuration: {default: 12h, max: 8h}}`,
			wantField: "spec.sessionDuration.default",
			wantMsg:   "sessionDuration.default must not exceed sessionDuration.max",
		},
		"TokenPolicyBadIssuerPattern": {
			reason:    "Allowed issuers are http(s) URL patterns.",
			base:      "apiVersion: tokenkeeper.io/v1alpha1\nkind: TokenPolicy\nmetadata: {name: bad}\nspec: {}",
			patch:     `spec: {allowedIssuers: ["ftp://*.example.com"]}`,
			wantField: "spec.allowedIssuers[0]",
			wantMsg:   "should match",
		},
		"TokenValidatorNoIssuers": {
			reason:    "A validator that trusts no issuer rejects everything.",
			base:      "apiVersion: tokenkeeper.io/v1alpha1\nkind: TokenValidator\nmetadata: {name: bad, namespace: crd-test}\nspec: {issuers: []}",
			wantField: "spec.issuers",
			wantMsg:   "should have at least 1 items",
		},
		"TokenValidatorAlgNone": {
			reason:    "alg none is never accepted.",
			base:      "apiVersion: tokenkeeper.io/v1alpha1\nkind: TokenValidator\nmetadata: {name: bad, namespace: crd-test}\nspec: {issuers: [{name: a}]}",
			patch:     `spec: {algorithms: [none]}`,
			wantField: "spec.algorithms[0]",
			wantMsg:   `Unsupported value: "none"`,
		},
		"TokenValidatorSystemUsernamePrefix": {
			reason:    "A username prefix in system: would make every token a Kubernetes system user.",
			base:      "apiVersion: tokenkeeper.io/v1alpha1\nkind: TokenValidator\nmetadata: {name: bad, namespace: crd-test}\nspec: {issuers: [{name: a}]}",
			patch:     `spec: {tokenReview: {usernamePrefix: "system:"}}`,
			wantField: "spec.tokenReview.usernamePrefix",
			wantMsg:   "usernamePrefix may not start with system:",
		},
		"TokenValidatorSystemGroupsPrefix": {
			reason:    "A groups prefix in system: would put every token in Kubernetes' own groups.",
			base:      "apiVersion: tokenkeeper.io/v1alpha1\nkind: TokenValidator\nmetadata: {name: bad, namespace: crd-test}\nspec: {issuers: [{name: a}]}",
			patch:     `spec: {tokenReview: {groupsPrefix: "system:serviceaccounts:"}}`,
			wantField: "spec.tokenReview.groupsPrefix",
			wantMsg:   "groupsPrefix may not start with system:",
		},
		"CredentialNameTooLong": {
			reason:    "A name whose state Secret cannot fit 253 characters.",
			base:      "apiVersion: tokenkeeper.io/v1alpha1\nkind: Credential\nmetadata: {name: " + strings.Repeat("n", 236) + ", namespace: crd-test}\nspec: {issuerRef: {name: a}, secretName: t, password: {secretRef: {name: a}}}",
			wantField: "",
			wantMsg:   "metadata.name may be at most 235 characters",
		},
		"CredentialTemplateBadKey": {
			reason:    "A key that is not a valid Secret key fails every write of the Secret.",
			base:      credentialBase,
			patch:     `spec: {password: {secretRef: {name: a}}, secretTemplate: {data: {"config/json": "{}"}}}`,
			wantField: "spec.secretTemplate.data",
			wantMsg:   "must be valid Secret keys",
		},
		"CredentialTemplateReplacesToken": {
			reason:    "A template key named token would replace the token itself.",
			base:      credentialBase,
			patch:     `spec: {password: {secretRef: {name: a}}, secretTemplate: {data: {token: "{{ .expiresAt }}"}}}`,
			wantField: "spec.secretTemplate.data",
			wantMsg:   "may not replace the token",
		},
		"TokenValidatorForwardIntoAuthorization": {
			reason:    "A claim forwarded as Authorization or Set-Cookie would let a token's issuer speak for the proxy.",
			base:      "apiVersion: tokenkeeper.io/v1alpha1\nkind: TokenValidator\nmetadata: {name: bad, namespace: crd-test}\nspec: {issuers: [{name: a}]}",
			patch:     `spec: {forwardClaims: {sub: Set-Cookie}}`,
			wantField: "spec.forwardClaims",
			wantMsg:   "forwardClaims may not set Authorization",
		},
		"CredentialSecretNameIsAState": {
			reason:    "A target Secret named like another Credential's state Secret would fight over it.",
			base:      credentialBase,
			patch:     `spec: {password: {secretRef: {name: a}}, secretName: billing.tokenkeeper-state}`,
			wantField: "spec.secretName",
			wantMsg:   "secretName may not end in .tokenkeeper-state",
		},
		"CredentialSecretRefBadName": {
			reason:    "A Secret name no Secret can have would fail every reconcile with an empty status.",
			base:      credentialBase,
			patch:     `spec: {password: {secretRef: {name: "Billing_Password"}}}`,
			wantField: "spec.password.secretRef.name",
			wantMsg:   "should match",
		},
		"IssuerHeaderSecretBadName": {
			reason:    "Likewise for a header's Secret.",
			base:      issuerBase,
			patch:     `spec: {headers: [{name: Api-Key, valueFrom: {secretKeyRef: {name: "../keys", key: k}}}]}`,
			wantField: "spec.headers[0].valueFrom.secretKeyRef.name",
			wantMsg:   "should match",
		},
		"CredentialIssuerRefBadName": {
			reason:    "An issuer name no Issuer can have.",
			base:      credentialBase,
			patch:     `spec: {password: {secretRef: {name: a}}, issuerRef: {name: "My Issuer"}}`,
			wantField: "spec.issuerRef.name",
			wantMsg:   "should match",
		},
		"TokenValidatorMixedHMAC": {
			reason:    "Mixing HMAC and public-key algorithms opens the key-confusion attack.",
			base:      "apiVersion: tokenkeeper.io/v1alpha1\nkind: TokenValidator\nmetadata: {name: bad, namespace: crd-test}\nspec: {issuers: [{name: a}]}",
			patch:     `spec: {algorithms: [RS256, HS256]}`,
			wantField: "spec.algorithms",
			wantMsg:   "do not mix HMAC (HS*) and public-key algorithms in one validator",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			obj := merge(t, tc.base, tc.patch)
			err := env.Client.Create(t.Context(), obj, client.DryRunAll)
			if err == nil {
				t.Fatalf("%s\nmanifest was accepted, want it rejected", tc.reason)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("%s\nwant an Invalid error, got: %v", tc.reason, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("%s\nmessage %q does not contain %q", tc.reason, msg, tc.wantMsg)
			}
			if tc.wantField != "" && !strings.Contains(msg, tc.wantField+": ") {
				t.Errorf("%s\nmessage %q does not name field %q", tc.reason, msg, tc.wantField)
			}
		})
	}
}
