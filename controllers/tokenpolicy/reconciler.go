// Package tokenpolicy reconciles TokenPolicies: it writes what each one does now — whether its
// selector is valid, which namespaces it selects, and which policies of the same priority select
// some of them too — so a platform team sees a policy's reach before a Credential meets it.
package tokenpolicy

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/status"
)

// shownNamespaces bounds the namespaces a status message names (the count is always whole).
const shownNamespaces = 10

// Reconciler writes TokenPolicy status.
type Reconciler struct {
	client.Client
}

// +kubebuilder:rbac:groups=tokenkeeper.io,resources=tokenpolicies/status,verbs=get;update;patch

// SetupWithManager reconciles a policy when it, another policy or a namespace changes (a policy
// reaches namespaces by their labels; its overlaps depend on the other policies).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	all := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list v1alpha1.TokenPolicyList
		if err := r.List(ctx, &list); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, len(list.Items))
		for i := range list.Items {
			reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
		}
		return reqs
	})
	return ctrl.NewControllerManagedBy(mgr).Named("tokenpolicy").
		For(&v1alpha1.TokenPolicy{}).
		Watches(&v1alpha1.TokenPolicy{}, all).
		Watches(&corev1.Namespace{}, all).
		Complete(r)
}

// Reconcile writes one policy's status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	p := &v1alpha1.TokenPolicy{}
	if err := r.Get(ctx, req.NamespacedName, p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := p.DeepCopy()
	p.Status.ObservedGeneration = p.Generation
	var policies v1alpha1.TokenPolicyList
	var namespaces corev1.NamespaceList
	if err := r.List(ctx, &policies); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.List(ctx, &namespaces); err != nil {
		return ctrl.Result{}, err
	}
	cond := Describe(p, policies.Items, namespaces.Items)
	cond.ObservedGeneration = p.Generation
	meta.SetStatusCondition(&p.Status.Conditions, cond)
	return ctrl.Result{}, status.Patch(ctx, r.Client, before, p, func(t *v1alpha1.TokenPolicy) any { return t.Status })
}

// Describe is p's Ready condition among the policies and namespaces of the cluster: False when
// its selector is invalid, else True saying how many namespaces it selects (naming the first
// few) and which policies of the same priority select some of them too.
func Describe(p *v1alpha1.TokenPolicy, policies []v1alpha1.TokenPolicy, namespaces []corev1.Namespace) metav1.Condition {
	own, err := selector(p)
	if err != nil {
		return metav1.Condition{Type: string(v1alpha1.ConditionReady), Status: metav1.ConditionFalse, Reason: string(v1alpha1.ReasonInvalidSelector),
			Message: "spec.namespaceSelector: " + err.Error() + "; the policy selects no namespace until it is fixed"}
	}
	var selected []string
	overlaps := map[string]bool{}
	for _, ns := range namespaces {
		set := labels.Set(ns.Labels)
		if !own.Matches(set) {
			continue
		}
		selected = append(selected, ns.Name)
		for i := range policies {
			q := &policies[i]
			if q.Name == p.Name || q.Spec.Priority != p.Spec.Priority || overlaps[q.Name] {
				continue
			}
			if sel, err := selector(q); err == nil && sel.Matches(set) {
				overlaps[q.Name] = true
			}
		}
	}
	slices.Sort(selected)
	msg := fmt.Sprintf("in force in %d namespace%s", len(selected), plural(len(selected)))
	if len(selected) > 0 {
		shown := selected[:min(len(selected), shownNamespaces)]
		msg += ": " + strings.Join(shown, ", ")
		if len(selected) > len(shown) {
			msg += fmt.Sprintf(" and %d more", len(selected)-len(shown))
		}
	}
	if len(overlaps) > 0 {
		names := make([]string, 0, len(overlaps))
		for n := range overlaps {
			names = append(names, n)
		}
		slices.Sort(names)
		msg += fmt.Sprintf("; TokenPolicy %s also select%s some of them at the same priority %d: their defaults are taken in name order, their limits combine (the strictest wins)",
			strings.Join(names, ", "), plural1(len(names)), p.Spec.Priority)
	}
	return metav1.Condition{Type: string(v1alpha1.ConditionReady), Status: metav1.ConditionTrue, Reason: string(v1alpha1.ReasonPolicyInForce), Message: msg}
}

func selector(p *v1alpha1.TokenPolicy) (labels.Selector, error) {
	if p.Spec.NamespaceSelector == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(p.Spec.NamespaceSelector)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// plural1 is the verb ending for n subjects: "selects" for one, "select" for more.
func plural1(n int) string {
	if n == 1 {
		return "s"
	}
	return ""
}
