package credential

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
	"github.com/tokenkeeper/tokenkeeper/internal/names"
	"github.com/tokenkeeper/tokenkeeper/internal/renewal"
)

// MaxNameLength is the longest Credential name: 253 less the state Secret suffix.
const MaxNameLength = names.MaxCredentialName

// state is what the state Secret holds: the session, so that a restarted manager carries on
// without logging in again and a rotated refresh token is never lost, and the issuer call in
// flight, so that a crash never leads to a refresh token being sent twice.
type state struct {
	token         *issuer.Token // nil: no session
	sessionStart  time.Time
	inputsVersion string
	failedInputs  string
	// retired are the sessions fresh logins replaced, oldest first, each revoked at its own time:
	// once pods have had time to read its successor from their mounted Secret.
	retired []retiredSession
	// pending is the issuer call recorded before it was sent; found on load, it is a call whose
	// outcome was never recorded (the manager died, or could not reach the API server).
	pending *attempt
	// spentInput is the fingerprint of the input Secret's refresh token once it has been sent
	// (refreshToken logins): that token is never sent again, whatever else changes; only a new
	// one in the input Secret can start a new session.
	spentInput string
	// rejected is the fingerprint of the token the issuer's probe rejected (401/403): that
	// session is over, log in again.
	rejected string
	// endedAfter is how long a session lived that the issuer ended before its stated expiry (the
	// probe found it rejected); later tokens of the same inputs are taken to live no longer.
	endedAfter time.Duration
	// first: the token is the Credential's first (its renewal is spread wider).
	first bool
	// revokes: deleting the Credential revokes its sessions. The state Secret then carries the
	// revoke finalizer, so that its tokens outlive any order of deletion (a namespace's).
	revokes bool
	// revocation is what revoking needs besides the tokens (a revocationSnapshot, JSON), for
	// when the issuer or the inputs are deleted first; kept only while revokes.
	revocation []byte

	// resourceVersion is the state Secret's version this state was read at or written as; ""
	// when there is no state Secret. Writes are conditional on it.
	resourceVersion string
	// uid is the state Secret's UID, once it exists (ServiceAccount tokens are bound to it).
	uid types.UID
	// restored: the state Secret vanished and this state is the manager's last copy of it.
	restored bool
	// basedOn is the ID of the call this (unsaved) state is the outcome of.
	basedOn string
	// orphaned is a token obtained but superseded before it could be written: revoke it.
	orphaned *issuer.Token
}

// retiredSession is a session a fresh login replaced, revoked at At.
type retiredSession struct {
	Token *issuer.Token
	At    time.Time
}

// maxRetired bounds the replaced sessions waiting for revocation. Renewals are at least
// renewal.MinRenewalInterval (5 s) apart, so 16 cover the default 2-minute lead even when
// renewals are asked for back to back; past that the oldest is revoked early.
const maxRetired = 16

// attempt is one login or refresh, recorded in the state Secret before it is sent.
type attempt struct {
	ID     string `json:"id"`
	Op     string `json:"op"` // "login" or "refresh"
	Issuer string `json:"issuer"`
	// InputToken is the fingerprint of the input refresh token a refreshToken login sends.
	InputToken string    `json:"inputToken,omitempty"`
	At         time.Time `json:"at"`
}

// StateSecretName is the name of a Credential's state Secret.
func StateSecretName(cred *v1alpha1.Credential) string { return names.StateSecret(cred.Name) }

func (s *state) session() *renewal.Session {
	if s.token == nil {
		return nil
	}
	return &renewal.Session{IssuedAt: s.token.IssuedAt, ExpiresAt: s.token.ExpiresAt, RefreshExpiresAt: s.token.RefreshExpiresAt,
		HasRefreshToken: s.token.RefreshToken != "", Start: s.sessionStart, InputsVersion: s.inputsVersion,
		Rejected: s.rejected != "" && s.rejected == s.token.Fingerprint(), First: s.first}
}

// clone copies s deeply enough that changing the copy's tokens leaves s alone.
func (s *state) clone() *state {
	c := *s
	if s.token != nil {
		t := *s.token
		c.token = &t
	}
	c.retired = make([]retiredSession, len(s.retired))
	for i, r := range s.retired {
		t := *r.Token
		c.retired[i] = retiredSession{Token: &t, At: r.At}
	}
	if s.pending != nil {
		p := *s.pending
		c.pending = &p
	}
	return &c
}

// dropRefreshToken forgets the session's refresh token, which may have been spent: the access
// token stays in use until its renewal, which is then a fresh login.
func (s *state) dropRefreshToken() {
	if s.token != nil {
		s.token.RefreshToken, s.token.RefreshField, s.token.RefreshExpiresAt = "", "", time.Time{}
	}
}

// errStateConflict means the state Secret changed under us: nothing was sent, start over from
// a fresh read.
var errStateConflict = errors.New("the state Secret changed since it was read; reconciling again from a fresh read")

// stateStore reads and writes state Secrets so that a refresh token is only ever sent from a
// state known to be current, and a token the issuer handed out is never dropped while the
// manager runs.
//
// A state is known to be current when it came from an uncached read, or from a write that
// succeeded at that resourceVersion; the cached copy is used only while its resourceVersion is
// the one this manager last saw. Writes are conditional on the resourceVersion, so two writers
// can never both think they hold the session.
type stateStore struct {
	client client.Client // cached reads and writes
	reader client.Reader // uncached reads
	scheme *runtime.Scheme
	echoes *echoes

	mu sync.Mutex
	// last is the newest state this manager read uncached or wrote, per Credential.
	last map[types.NamespacedName]*storedState
	// unsaved holds results the manager obtained but could not yet write (the API server was
	// unreachable); they are written before anything else is done for that Credential.
	unsaved map[types.NamespacedName]*storedState
}

type storedState struct {
	uid types.UID
	st  *state
}

func newStateStore(c client.Client, reader client.Reader, scheme *runtime.Scheme, e *echoes) *stateStore {
	return &stateStore{client: c, reader: reader, scheme: scheme, echoes: e,
		last: map[types.NamespacedName]*storedState{}, unsaved: map[types.NamespacedName]*storedState{}}
}

// load returns the Credential's current state: an unsaved result first written, else the cached
// state Secret when it is the version this manager last saw, else an uncached read.
func (s *stateStore) load(ctx context.Context, cred *v1alpha1.Credential) (*state, error) {
	key := client.ObjectKeyFromObject(cred)
	if held := s.get(s.unsaved, key, cred.UID); held != nil {
		return s.flush(ctx, cred, held)
	}
	last := s.get(s.last, key, cred.UID)
	sec := &corev1.Secret{}
	if err := s.client.Get(ctx, stateKey(cred), sec); err == nil && last != nil && sec.ResourceVersion == last.resourceVersion {
		return last, nil
	}
	st, err := s.read(ctx, cred)
	if st == nil && err == nil {
		if last != nil && last.resourceVersion != "" {
			// Deleted by hand while the manager ran: the manager's copy is the session.
			st = last.clone()
			st.resourceVersion, st.restored = "", true
			return st, nil
		}
		return &state{}, nil
	}
	return st, err
}

// read reads the state Secret uncached; nil and no error when there is none.
func (s *stateStore) read(ctx context.Context, cred *v1alpha1.Credential) (*state, error) {
	sec := &corev1.Secret{}
	if err := s.reader.Get(ctx, stateKey(cred), sec); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	st := decodeState(sec)
	s.remember(s.last, client.ObjectKeyFromObject(cred), cred.UID, st)
	return st, nil
}

// flush writes a result held in memory. When the state Secret changed meanwhile, the result is
// written over it only if it still records the call that produced the result; otherwise the
// result is handed back as orphaned, for revocation.
func (s *stateStore) flush(ctx context.Context, cred *v1alpha1.Credential, held *state) (*state, error) {
	err := s.write(ctx, cred, held)
	if errors.Is(err, errStateConflict) {
		fresh, rerr := s.read(ctx, cred)
		if rerr != nil {
			return nil, rerr
		}
		if fresh != nil && fresh.pending != nil && fresh.pending.ID == held.basedOn {
			held.resourceVersion = fresh.resourceVersion
			err = s.write(ctx, cred, held)
		} else {
			if fresh == nil {
				fresh = &state{}
			}
			if t := held.token; t != nil && (fresh.token == nil || fresh.token.AccessToken != t.AccessToken) {
				fresh.orphaned = t
			}
			err = nil
			held = fresh
		}
	}
	if err != nil {
		return nil, fmt.Errorf("writing a result obtained earlier to the state Secret: %w", err)
	}
	s.mu.Lock()
	delete(s.unsaved, client.ObjectKeyFromObject(cred))
	s.mu.Unlock()
	return held, nil
}

func stateKey(cred *v1alpha1.Credential) types.NamespacedName {
	return types.NamespacedName{Namespace: cred.Namespace, Name: StateSecretName(cred)}
}

// begin records a call in the state Secret before it is sent. It succeeds only if the state
// Secret is still at st's resourceVersion: the refresh token in st is then the current one.
func (s *stateStore) begin(ctx context.Context, cred *v1alpha1.Credential, st *state, op, issuerKey, inputToken string) error {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	st.pending = &attempt{ID: hex.EncodeToString(id), Op: op, Issuer: issuerKey, InputToken: inputToken, At: time.Now().UTC()}
	if err := s.write(ctx, cred, st); err != nil {
		st.pending = nil
		return err
	}
	return nil
}

// commit writes st (the outcome of a call, or any other change). When the API server cannot be
// reached, st is kept in memory and written before anything else is done for the Credential.
func (s *stateStore) commit(ctx context.Context, cred *v1alpha1.Credential, st *state) error {
	err := s.write(ctx, cred, st)
	if err != nil && !errors.Is(err, errStateConflict) {
		s.remember(s.unsaved, client.ObjectKeyFromObject(cred), cred.UID, st)
	}
	return err
}

// write creates or updates the state Secret, conditional on st.resourceVersion.
func (s *stateStore) write(ctx context.Context, cred *v1alpha1.Credential, st *state) error {
	sec := encodeState(cred, st)
	if err := controllerutil.SetControllerReference(cred, sec, s.scheme); err != nil {
		return err
	}
	s.echoes.expect(sec)
	var err error
	if st.resourceVersion == "" {
		err = s.client.Create(ctx, sec)
	} else {
		sec.ResourceVersion = st.resourceVersion
		err = s.client.Update(ctx, sec)
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		s.forget(client.ObjectKeyFromObject(cred))
		return errStateConflict
	}
	if err != nil {
		return err
	}
	st.resourceVersion, st.uid, st.restored = sec.ResourceVersion, sec.UID, false
	s.remember(s.last, client.ObjectKeyFromObject(cred), cred.UID, st)
	return nil
}

// forget drops what the manager knows of a Credential's state, so that the next load reads it
// from the API server.
func (s *stateStore) forget(key types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.last, key)
}

// drop forgets a deleted Credential entirely.
func (s *stateStore) drop(key types.NamespacedName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.last, key)
	delete(s.unsaved, key)
}

// lastOf returns the newest state this manager read or wrote, nil if none.
func (s *stateStore) lastOf(cred *v1alpha1.Credential) *state {
	return s.get(s.last, client.ObjectKeyFromObject(cred), cred.UID)
}

// release removes the revoke finalizer from the state Secret named key, once its sessions are
// revoked (or cannot be): the Secret then goes the way it was meant to (garbage collection, a
// deletion). sec is its copy when the caller has one; it is read uncached otherwise.
func (s *stateStore) release(ctx context.Context, key types.NamespacedName, sec *corev1.Secret) error {
	if sec == nil {
		sec = &corev1.Secret{}
		if err := s.reader.Get(ctx, key, sec); err != nil {
			return client.IgnoreNotFound(err)
		}
	}
	if !controllerutil.ContainsFinalizer(sec, Finalizer) {
		return nil
	}
	before := sec.DeepCopy()
	controllerutil.RemoveFinalizer(sec, Finalizer)
	if err := s.client.Patch(ctx, sec, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("removing the finalizer of state Secret %s: %w", key.Name, err)
	}
	return nil
}

// unsavedOf returns a result not yet written, for revoking it when its Credential is deleted.
func (s *stateStore) unsavedOf(cred *v1alpha1.Credential) *state {
	return s.get(s.unsaved, client.ObjectKeyFromObject(cred), cred.UID)
}

func (s *stateStore) get(m map[types.NamespacedName]*storedState, key types.NamespacedName, uid types.UID) *state {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := m[key]; e != nil && e.uid == uid {
		return e.st.clone()
	}
	return nil
}

func (s *stateStore) remember(m map[types.NamespacedName]*storedState, key types.NamespacedName, uid types.UID, st *state) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m[key] = &storedState{uid: uid, st: st.clone()}
}

// State Secret keys.
const (
	keyAccessToken   = "access-token"
	keyRefreshToken  = "refresh-token"
	keyPending       = "pending"
	keySpentInput    = "spent-input"
	keyRejected      = "rejected"
	keyRetired       = "retired"
	keyRetiredAccess = "retired-access-token" // one retired session, as v0.2 wrote it
	keyFirst         = "first-token"
	keyEndedAfter    = "ended-after"
	keyRevocation    = "revocation" // revocationSnapshot, JSON
)

func decodeState(sec *corev1.Secret) *state {
	st := &state{inputsVersion: sec.Annotations[annotationInputs], failedInputs: sec.Annotations[annotationFailed],
		resourceVersion: sec.ResourceVersion, uid: sec.UID, spentInput: string(sec.Data[keySpentInput]), rejected: string(sec.Data[keyRejected])}
	d := func(k string) string { return string(sec.Data[k]) }
	t := func(k string) time.Time { v, _ := time.Parse(time.RFC3339Nano, d(k)); return v }
	if d(keyAccessToken) != "" {
		st.token = &issuer.Token{AccessToken: d(keyAccessToken), Scheme: d("token-type"), RefreshToken: d(keyRefreshToken),
			RefreshField: d("refresh-field"), IssuedAt: t("issued-at"), ExpiresAt: t("expires-at"),
			ExpirySource: issuer.ExpirySource(d("expiry-source")), ExpiryField: d("expiry-field"), RefreshExpiresAt: t("refresh-expires-at")}
		_ = json.Unmarshal(sec.Data["extra"], &st.token.Extra)
		st.sessionStart = t("session-start")
		st.endedAfter, _ = time.ParseDuration(d(keyEndedAfter))
		st.first = d(keyFirst) == "true"
	}
	st.revokes, st.revocation = controllerutil.ContainsFinalizer(sec, Finalizer), sec.Data[keyRevocation]
	if d(keyRetiredAccess) != "" {
		st.retired = []retiredSession{{Token: &issuer.Token{AccessToken: d(keyRetiredAccess), RefreshToken: d("retired-refresh-token"),
			Scheme: d("retired-token-type")}, At: t("retire-at")}}
	}
	var retired []storedRetired
	_ = json.Unmarshal(sec.Data[keyRetired], &retired) // unreadable: nothing to revoke, they expire
	for _, r := range retired {
		if r.AccessToken != "" {
			st.retired = append(st.retired, retiredSession{Token: &issuer.Token{AccessToken: r.AccessToken, RefreshToken: r.RefreshToken,
				Scheme: r.TokenType}, At: r.At})
		}
	}
	if p := sec.Data[keyPending]; len(p) > 0 {
		st.pending = &attempt{}
		if json.Unmarshal(p, st.pending) != nil {
			st.pending = &attempt{Op: "unknown"} // unreadable: treat as a call of unknown outcome
		}
	}
	return st
}

// storedRetired is a retired session as the state Secret holds it.
type storedRetired struct {
	AccessToken  string    `json:"accessToken"`
	RefreshToken string    `json:"refreshToken,omitempty"`
	TokenType    string    `json:"tokenType,omitempty"`
	At           time.Time `json:"retireAt"`
}

func encodeState(cred *v1alpha1.Credential, st *state) *corev1.Secret {
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: cred.Namespace, Name: StateSecretName(cred)}, Type: corev1.SecretTypeOpaque}
	setManaged(&sec.ObjectMeta, cred, "state")
	sec.Annotations[annotationInputs] = st.inputsVersion
	sec.Annotations[annotationFailed] = st.failedInputs
	sec.Data = map[string][]byte{}
	ts := func(t time.Time) []byte {
		if t.IsZero() {
			return nil
		}
		return []byte(t.UTC().Format(time.RFC3339Nano))
	}
	if tok := st.token; tok != nil {
		extra, _ := json.Marshal(tok.Extra)
		sec.Data = map[string][]byte{
			keyAccessToken: []byte(tok.AccessToken), "token-type": []byte(tok.Scheme), keyRefreshToken: []byte(tok.RefreshToken),
			"refresh-field": []byte(tok.RefreshField), "issued-at": ts(tok.IssuedAt), "expires-at": ts(tok.ExpiresAt),
			"expiry-source": []byte(tok.ExpirySource), "expiry-field": []byte(tok.ExpiryField), "refresh-expires-at": ts(tok.RefreshExpiresAt),
			"session-start": ts(st.sessionStart), "extra": extra,
		}
		if st.first {
			sec.Data[keyFirst] = []byte("true")
		}
		if st.endedAfter > 0 {
			sec.Data[keyEndedAfter] = []byte(st.endedAfter.String())
		}
	}
	if len(st.retired) > 0 {
		retired := make([]storedRetired, len(st.retired))
		for i, r := range st.retired {
			retired[i] = storedRetired{AccessToken: r.Token.AccessToken, RefreshToken: r.Token.RefreshToken, TokenType: r.Token.Scheme, At: r.At}
		}
		sec.Data[keyRetired], _ = json.Marshal(retired) //nolint:gosec // the state Secret is where session tokens are kept, never mounted by pods
	}
	if st.pending != nil {
		sec.Data[keyPending], _ = json.Marshal(st.pending)
	}
	if st.spentInput != "" {
		sec.Data[keySpentInput] = []byte(st.spentInput)
	}
	if st.rejected != "" {
		sec.Data[keyRejected] = []byte(st.rejected)
	}
	if st.revokes {
		sec.Finalizers = []string{Finalizer}
		if len(st.revocation) > 0 {
			sec.Data[keyRevocation] = st.revocation
		}
	}
	return sec
}
