// Command manager runs tokenkeeper: the controllers, the admission webhooks and the token
// validation endpoint, in one binary. This file is wiring only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	tokenkeeperv1alpha1 "github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/controllers"
	"github.com/tokenkeeper/tokenkeeper/controllers/clustercredential"
	"github.com/tokenkeeper/tokenkeeper/controllers/credential"
	"github.com/tokenkeeper/tokenkeeper/controllers/podrefresh"
	"github.com/tokenkeeper/tokenkeeper/internal/admission"
	"github.com/tokenkeeper/tokenkeeper/internal/egress"
	"github.com/tokenkeeper/tokenkeeper/internal/metricsauth"
	"github.com/tokenkeeper/tokenkeeper/internal/sds"
	"github.com/tokenkeeper/tokenkeeper/internal/validation"
	"github.com/tokenkeeper/tokenkeeper/internal/webhookcert"
)

// The metrics filter asks the API server who a scraper is and whether it may get /metrics.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// selfManagedCerts makes sure the webhook certificate exists before the webhook server starts,
// and returns the runnable that renews it. Outside a cluster the certificate also names
// localhost, 127.0.0.1 and ::1.
func selfManagedCerts(ctx context.Context, direct client.Client, ns string, services []string, secret, config, dir string, local bool) (*webhookcert.Manager, error) {
	m := &webhookcert.Manager{
		Client: direct, Clock: clock.RealClock{}, CertDir: dir,
		Secret:                types.NamespacedName{Namespace: ns, Name: secret},
		DNSNames:              dnsNames(services, ns),
		WebhookConfigurations: []string{config},
	}
	if local {
		m.DNSNames = append(m.DNSNames, "localhost")
		m.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	}
	var lastErr error
	for range 30 {
		if lastErr = m.Ensure(ctx); lastErr == nil {
			return m, nil
		}
		time.Sleep(time.Second)
	}
	return nil, lastErr
}

func dnsNames(services []string, ns string) []string {
	var names []string
	for _, s := range services {
		names = append(names, s+"."+ns+".svc", s+"."+ns+".svc.cluster.local")
	}
	return names
}

// metricsOptions serves metrics over HTTPS (a self-signed certificate) behind the API server's
// authentication (401 for a token it does not accept) and authorization (403), or over plain
// HTTP when not secure.
func metricsOptions(addr string, secure bool) metricsserver.Options {
	opts := metricsserver.Options{BindAddress: addr}
	if secure {
		opts.SecureServing = true
		opts.FilterProvider = metricsauth.Filter
	}
	return opts
}

// defaultNamespace is where the manager keeps its Lease and certificate when no flag says: its
// pod's namespace in a cluster, else the current kubeconfig context's (a run outside the cluster
// needs nothing installed but the CRDs).
func defaultNamespace(inCluster bool) string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if inCluster {
		return "tokenkeeper-system"
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if f := flag.Lookup("kubeconfig"); f != nil && f.Value.String() != "" {
		rules.ExplicitPath = f.Value.String()
	}
	ns, _, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).Namespace()
	if err != nil || ns == "" {
		return "default"
	}
	return ns
}

// webhooksWanted decides whether to serve admission webhooks: on, off, or (auto) when their
// ValidatingWebhookConfiguration exists, as it does wherever the chart is installed.
func webhooksWanted(ctx context.Context, direct client.Client, mode, config string) (bool, error) {
	switch mode {
	case "on":
		return true, nil
	case "off":
		return false, nil
	case "auto":
		err := direct.Get(ctx, types.NamespacedName{Name: config}, &admissionregistrationv1.ValidatingWebhookConfiguration{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}
	return false, fmt.Errorf("--webhooks=%q: want auto, on or off", mode)
}

// parseFlags parses args and, on a mistake, says what is wrong in one line on stderr and exits 2,
// without the flag package's usage text (--help prints that).
func parseFlags(fs *flag.FlagSet, args []string) {
	fs.Init(fs.Name(), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		os.Exit(0)
	case err != nil:
		_, _ = fmt.Fprintf(os.Stderr, "manager: %v (--help lists the flags)\n", err)
		os.Exit(2)
	}
}

func main() {
	var (
		metricsAddr    string
		probeAddr      string
		leaderElection bool
		leaseDuration  time.Duration
		renewDeadline  time.Duration
		retryPeriod    time.Duration
		resourceNS     string
		webhookPort    int
		certDir        string
		certMode       string
		webhookService string
		certSecret     string
		webhookConfig  string
		validationAddr string
		validationSvc  string
		validationConn int
		extAuthzH2C    string
		extAuthzTLS    string
		extAuthzDef    string
		sdsAddr        string
		sdsAudience    string
		sdsOpts        sds.Options
		watch          string
		qps            float64
		burst          int
		concurrency    int
		callsPerNS     int
		restarts       credential.RestartOptions
		allowEgress    string
		webhookHost    string
		webhooks       string
		metricsSecure  bool
		pprofAddr      string
		ccNamespace    string
		ccMaxNS        int
		podRefresh     podrefresh.Options
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the metrics endpoint binds to; 0 disables it.")
	flag.BoolVar(&metricsSecure, "metrics-secure", true,
		"Serve metrics over HTTPS to callers the API server authenticates and authorizes (get on /metrics, as ClusterRole "+
			"tokenkeeper-metrics-reader grants); false serves plain HTTP to anyone, for local use.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "",
		"Address the Go profiler (/debug/pprof/) listens on, for diagnosis; empty (the default) disables it. It has no authentication: bind it to loopback.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	flag.BoolVar(&leaderElection, "leader-elect", true, "Elect a leader (Lease) so that only one replica reconciles.")
	flag.DurationVar(&leaseDuration, "leader-elect-lease-duration", 15*time.Second,
		"How long a standby waits, after the leader's last renewal, before taking the Lease from a leader that died.")
	flag.DurationVar(&renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long the leader tries to renew before it gives up leading.")
	flag.DurationVar(&retryPeriod, "leader-elect-retry-period", 2*time.Second, "How often candidates try to take, and the leader to renew, the Lease.")
	flag.StringVar(&resourceNS, "cluster-resource-namespace", "",
		"Namespace of the manager's Lease and webhook certificate, and of the Secrets that ClusterIssuers refer to without a namespace. "+
			"Defaults to $POD_NAMESPACE; outside a cluster, to the kubeconfig context's namespace.")
	flag.IntVar(&webhookPort, "webhook-port", 9443, "Port the admission webhook server listens on.")
	flag.StringVar(&webhookHost, "webhook-bind-address", "", "Address (host) the admission webhook server binds to; empty: every interface.")
	flag.StringVar(&webhooks, "webhooks", "auto",
		"Serve admission webhooks: on, off, or auto (when the ValidatingWebhookConfiguration named by --webhook-configuration exists).")
	flag.StringVar(&certDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "Directory holding the webhook server's tls.crt and tls.key.")
	flag.StringVar(&certMode, "webhook-cert-mode", "self", "self: the manager creates, rotates and injects the webhook certificate; external: cert-manager (or you) provides it in --webhook-cert-dir.")
	flag.StringVar(&webhookService, "webhook-service", "tokenkeeper-webhook", "Name of the webhook Service, for the certificate's DNS names.")
	flag.StringVar(&certSecret, "webhook-cert-secret", "tokenkeeper-webhook-cert", "Secret holding the self-managed webhook CA and certificate.")
	flag.StringVar(&webhookConfig, "webhook-configuration", "tokenkeeper", "ValidatingWebhookConfiguration to inject the CA bundle into.")
	flag.StringVar(&validationAddr, "validation-bind-address", ":8443", "Address the token validation endpoint (/validate, /tokenreview) listens on, with the webhook certificate.")
	flag.IntVar(&validationConn, "validation-max-connections-per-client", validation.DefaultMaxConnectionsPerClient,
		fmt.Sprintf("Connections one client (remote IP address: an ingress controller or API server pod) may hold open to the validation endpoint, "+
			"of %d in all; a client at its limit that opens another loses its oldest idle one.", validation.MaxConnections))
	flag.StringVar(&extAuthzH2C, "ext-authz-h2c-bind-address", "",
		"Address a plaintext HTTP/2 (h2c) listener binds to, serving Envoy ext_authz over gRPC alone (grpc-go's own transport, about twice the "+
			"checks per second of the shared TLS port) to a sidecar or node-local proxy; empty (the default) disables it. "+
			"The validation endpoint serves gRPC over TLS in any case.")
	flag.StringVar(&extAuthzTLS, "ext-authz-bind-address", "",
		"Address a TLS listener binds to, serving Envoy ext_authz over gRPC alone (grpc-go's own transport, about twice the checks per "+
			"second of the shared TLS port) with the webhook certificate, to a proxy that originates TLS; empty (the default) disables it.")
	flag.StringVar(&extAuthzDef, "ext-authz-default-validator", "",
		"TokenValidator (namespace/name) that checks ext_authz gRPC requests whose route names none (context extension tokenkeeper.io/validator); "+
			"empty (the default): such requests are denied.")
	flag.StringVar(&sdsAddr, "sds-bind-address", "",
		"Address Envoy's Secret Discovery Service (gRPC over TLS, with the webhook certificate) listens on, serving Credentials' tokens to the "+
			"ServiceAccounts their spec.delivery.sds lists; empty (the default) disables it.")
	flag.StringVar(&sdsAudience, "sds-audience", sds.DefaultAudience, "Audience the ServiceAccount tokens of SDS clients must be issued for.")
	flag.IntVar(&sdsOpts.MaxStreams, "sds-max-streams", sds.DefaultMaxStreams, "SDS streams open at once, of all clients.")
	flag.IntVar(&sdsOpts.MaxStreamsPerServiceAccount, "sds-max-streams-per-service-account", sds.DefaultMaxStreamsPerServiceAccount,
		"SDS streams one ServiceAccount may hold open at once, over all its pods (Envoy opens one per secret).")
	flag.StringVar(&validationSvc, "validation-service", "tokenkeeper", "Name of the validation Service, for the certificate's DNS names.")
	flag.StringVar(&watch, "watch-namespaces", "", "Comma-separated namespaces to watch; empty watches all.")
	// Chosen from make bench (README, Scale): a rotation costs three writes, so 1,000 Credentials
	// with 2-minute tokens need about 50 writes/s, and a restart or a new fleet reads every state
	// Secret once; the API server's priority and fairness still has the last word.
	flag.Float64Var(&qps, "kube-api-qps", 200, "Queries per second to the API server.")
	flag.IntVar(&burst, "kube-api-burst", 400, "Burst of queries to the API server.")
	flag.IntVar(&concurrency, "max-concurrent-reconciles", 8, "Reconciles run in parallel per controller.")
	flag.IntVar(&callsPerNS, "max-issuer-calls-per-namespace", credential.DefaultCallsPerNamespace,
		"Issuer calls in flight at once per namespace and per issuer; each holds a worker, so an issuer that hangs holds at most this many.")
	flag.IntVar(&restarts.Budget, "rollout-restart-budget", credential.DefaultRestartBudget,
		"Workloads restarted for new tokens (spec.rolloutRestart) rolling out at once, cluster-wide; the rest wait, as Credentials' status shows.")
	flag.DurationVar(&restarts.Window, "rollout-restart-window", credential.DefaultRestartWindow,
		"How long a workload's restart waits for other Credentials it reads to rotate too, so that they share one restart.")
	flag.DurationVar(&restarts.Timeout, "rollout-restart-timeout", credential.DefaultRestartTimeout,
		"How long a restart that does not finish rolling out holds its slot of --rollout-restart-budget.")
	flag.StringVar(&ccNamespace, "cluster-credential-namespace", "",
		"Namespace of the Credentials that ClusterCredentials log in with, and of their input Secrets; defaults to --cluster-resource-namespace.")
	flag.IntVar(&ccMaxNS, "cluster-credential-max-namespaces", clustercredential.DefaultMaxNamespaces,
		"Namespaces one ClusterCredential copies its token into at most; beyond, the first ones by name, and Ready=False TooManyNamespaces.")
	flag.IntVar(&podRefresh.MaxPodsPerRotation, "pod-refresh-max-pods", podrefresh.DefaultMaxPodsPerRotation,
		"Running pods that mount a rotated token Secret patched per Secret and rotation, so that the kubelet rewrites the volume at once; "+
			"the others get the token at the kubelet's periodic sync (about a minute). 0 turns the refresh off: no pod is cached or patched.")
	flag.Float64Var(&podRefresh.QPS, "pod-refresh-qps", podrefresh.DefaultQPS, "Pod refresh patches per second, manager-wide.")
	flag.StringVar(&allowEgress, "allow-egress-cidrs", "",
		"Comma-separated CIDRs or addresses the manager may reach although they are loopback, link-local, metadata or its own "+
			"(issuers on 127.0.0.1 for a local run, say). Everything else in those ranges is refused when connecting.")
	// An error is one line: a stack trace says where the manager logged, which is no news to
	// whoever reads "reading --allow-egress-cidrs: ..."; --zap-stacktrace-level=error brings them back.
	zapOpts := zap.Options{StacktraceLevel: zapcore.PanicLevel}
	zapOpts.BindFlags(flag.CommandLine)
	parseFlags(flag.CommandLine, os.Args[1:])
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	inCluster := os.Getenv("KUBERNETES_SERVICE_HOST") != ""
	if resourceNS == "" {
		resourceNS = defaultNamespace(inCluster)
	}
	allowed, err := egress.ParsePrefixes(allowEgress)
	if err != nil {
		log.Error(err, "reading --allow-egress-cidrs")
		os.Exit(1)
	}
	if sdsAddr != "" && sdsAudience == "" {
		log.Error(errors.New("the audience of SDS clients' ServiceAccount tokens may not be empty"), "reading --sds-audience")
		os.Exit(1)
	}
	if certDir == "" && (extAuthzTLS != "" || sdsAddr != "") {
		// Both ports promise TLS: without a certificate directory the ext_authz port would serve
		// plaintext and SDS would look for tls.crt in the working directory once running.
		log.Error(errors.New("the TLS ext_authz and SDS ports need the serving certificate"), "reading --webhook-cert-dir")
		os.Exit(1)
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(tokenkeeperv1alpha1.AddToScheme(scheme))

	cfg, err := ctrl.GetConfig() // not GetConfigOrDie, whose error comes with a stack trace
	if err != nil {
		log.Error(err, "reading the kubeconfig")
		os.Exit(1)
	}
	cfg.QPS, cfg.Burst = float32(qps), burst
	// Managed fields are never read and are often the largest part of a cached object.
	cacheOpts := cache.Options{ByObject: controllers.CacheByObject(), DefaultTransform: cache.TransformStripManagedFields()}
	if watch != "" {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range strings.Split(watch, ",") {
			cacheOpts.DefaultNamespaces[strings.TrimSpace(ns)] = cache.Config{}
		}
	}
	shutdown := 30 * time.Second
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOptions(metricsAddr, metricsSecure),
		HealthProbeBindAddress:  probeAddr,
		PprofBindAddress:        pprofAddr,
		LeaderElection:          leaderElection,
		LeaderElectionID:        "tokenkeeper.tokenkeeper.io",
		LeaderElectionNamespace: resourceNS, // the Lease lives beside the manager, in or out of a cluster
		// The process exits right after the manager stops, so handing the Lease over at once is
		// safe and spares the other replica the lease duration.
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &leaseDuration,
		RenewDeadline:                 &renewDeadline,
		RetryPeriod:                   &retryPeriod,
		Cache:                         cacheOpts,
		Controller:                    config.Controller{MaxConcurrentReconciles: concurrency},
		GracefulShutdownTimeout:       &shutdown,
		WebhookServer:                 webhook.NewServer(webhook.Options{Host: webhookHost, Port: webhookPort, CertDir: certDir}),
	})
	if err != nil {
		log.Error(err, "creating manager")
		os.Exit(1)
	}
	ctx := ctrl.SetupSignalHandler()
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		log.Error(err, "creating a client")
		os.Exit(1)
	}
	serveWebhooks, err := webhooksWanted(ctx, direct, webhooks, webhookConfig)
	if err != nil {
		log.Error(err, "deciding whether to serve admission webhooks")
		os.Exit(1)
	}
	if !serveWebhooks {
		log.Info("admission webhooks are off: no ValidatingWebhookConfiguration "+webhookConfig+" (install the chart, or pass --webhooks=on)",
			"webhooks", webhooks)
	}
	if certMode == "self" {
		certs, err := selfManagedCerts(ctx, direct, resourceNS, []string{webhookService, validationSvc}, certSecret, webhookConfig, certDir, !inCluster)
		if err != nil {
			log.Error(err, "preparing the webhook certificate")
			os.Exit(1)
		}
		if err := mgr.Add(certs); err != nil {
			log.Error(err, "adding the webhook certificate manager")
			os.Exit(1)
		}
	}
	validationServer := validation.NewServer()
	extAuthz, err := validation.NewExtAuthz(validationServer, extAuthzDef)
	if err != nil {
		log.Error(err, "reading --ext-authz-default-validator")
		os.Exit(1)
	}
	validationHandler := validation.GRPCHandler(extAuthz.GRPCServer(), validationServer)
	if err := mgr.Add(&validation.Listener{Addr: validationAddr, CertDir: certDir, Handler: validationHandler,
		MaxConnectionsPerClient: validationConn}); err != nil {
		log.Error(err, "adding the validation endpoint")
		os.Exit(1)
	}
	if extAuthzH2C != "" {
		if err := mgr.Add(&validation.GRPCListener{Addr: extAuthzH2C, ExtAuthz: extAuthz,
			MaxConnectionsPerClient: validationConn}); err != nil {
			log.Error(err, "adding the ext_authz h2c endpoint")
			os.Exit(1)
		}
	}
	if extAuthzTLS != "" {
		if err := mgr.Add(&validation.GRPCListener{Addr: extAuthzTLS, CertDir: certDir, ExtAuthz: extAuthz,
			MaxConnectionsPerClient: validationConn}); err != nil {
			log.Error(err, "adding the ext_authz TLS endpoint")
			os.Exit(1)
		}
	}
	if sdsAddr != "" {
		auth := &sds.Authenticator{Reviewer: mgr.GetClient(), Audience: sdsAudience}
		srv := sds.NewServer(mgr.GetCache(), auth, sdsOpts, ctrl.Log.WithName("sds"))
		if err := mgr.Add(&sds.Listener{Addr: sdsAddr, CertDir: certDir, Server: srv, Cache: mgr.GetCache()}); err != nil {
			log.Error(err, "adding the SDS endpoint")
			os.Exit(1)
		}
	}
	if err := controllers.Setup(ctx, mgr, controllers.Options{ClusterResourceNamespace: resourceNS, Validation: validationServer,
		IssuerCallsPerNamespace: callsPerNS, Egress: egress.Default(allowed), Restarts: restarts,
		ClusterCredentialNamespace: ccNamespace, ClusterCredentialMaxNamespaces: ccMaxNS, PodRefresh: podRefresh}); err != nil {
		log.Error(err, "setting up controllers")
		os.Exit(1)
	}
	if serveWebhooks {
		if err := admission.Setup(mgr, allowed...); err != nil {
			log.Error(err, "setting up admission webhooks")
			os.Exit(1)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "adding health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "adding ready check")
		os.Exit(1)
	}
	log.Info("starting manager")
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "running manager")
		os.Exit(1)
	}
}
