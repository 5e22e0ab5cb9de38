/*
 * ListenerSet in the compiler (controller/compile.c): which ListenerSets a
 * Gateway's allowedListeners lets in, conflicts with the Gateway's listeners
 * and between ListenerSets (oldest first), ListenerSet and Gateway statuses,
 * routes attached through parentRefs of kind ListenerSet, ReferenceGrants
 * for a ListenerSet's certificates, and the incremental compiler staying
 * equal to a full compile when a ListenerSet changes.
 */
#include "common/pl.h"
#include "common/log.h"
#include "common/table.h"
#include "controller/compile.h"
#include "controller/store.h"
#include "check.h"

#define CLASS \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: pylon}\n" \
	"spec: {controllerName: pylon.dev/gateway-controller}\n---\n" \
	"apiVersion: v1\nkind: Service\nmetadata: {name: svc}\nspec: {ports: [{port: 8080}]}\n---\n"

#define GW(allowed) \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n" \
	"spec:\n  gatewayClassName: pylon\n" allowed \
	"  listeners:\n  - {name: gw-l, port: 80, protocol: HTTP, hostname: gw.example, " \
	"allowedRoutes: {namespaces: {from: All}}}\n---\n"

/* ListenerSet name in namespace ns (created at second sec) with one HTTP listener lname on port/host. */
#define LS(ns, name, sec, lname, port, host) \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\n" \
	"metadata: {name: " name ", namespace: " ns ", creationTimestamp: '2024-01-01T00:00:" sec "Z'}\n" \
	"spec:\n  parentRef: {name: gw, namespace: default}\n  listeners:\n" \
	"  - {name: " lname ", port: " port ", protocol: HTTP, hostname: " host "}\n---\n"

static struct pl_store *load(const char *yaml)
{
	char err[512];
	struct pl_store *s = pl_store_new();
	if (pl_store_load_yaml(s, yaml, strlen(yaml), "test.yaml", err, sizeof(err)) < 0) {
		fprintf(stderr, "load: %s\n", err);
		fails++;
	}
	return s;
}

static struct pl_compile_result run(const char *yaml)
{
	struct pl_store *s = load(yaml);
	struct pl_compile_opts o = { .now = "2024-01-01T00:00:00Z", .ephemeral = 1 };
	struct pl_compile_result r;
	pl_compile(s, &o, &r);
	pl_store_free(s);
	return r;
}

static json_t *status_of(struct pl_compile_result *r, const char *kind, const char *ns, const char *name)
{
	size_t i;
	json_t *o;
	json_array_foreach(r->statuses, i, o) {
		json_t *md = json_object_get(o, "metadata");
		const char *ons = json_string_value(json_object_get(md, "namespace"));
		if (!strcmp(json_string_value(json_object_get(o, "kind")), kind) &&
		    !strcmp(json_string_value(json_object_get(md, "name")), name) && ons && !strcmp(ons, ns))
			return json_object_get(o, "status");
	}
	return NULL;
}

static json_t *find_cond(json_t *conds, const char *type)
{
	size_t i;
	json_t *c;
	json_array_foreach(conds, i, c)
		if (!strcmp(json_string_value(json_object_get(c, "type")), type))
			return c;
	return NULL;
}

/* "True/Reason" of condition type of st (a status or a listener entry), "" if absent. */
static const char *cs(json_t *st, const char *type)
{
	static char buf[8][128];
	static int at;
	json_t *c = find_cond(json_object_get(st, "conditions"), type);
	if (!c)
		return "";
	char *b = buf[at++ % 8];
	snprintf(b, sizeof(buf[0]), "%s/%s", json_string_value(json_object_get(c, "status")),
		 json_string_value(json_object_get(c, "reason")));
	return b;
}

static json_t *listener(json_t *st, const char *name)
{
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(st, "listeners"), i, l)
		if (!strcmp(json_string_value(json_object_get(l, "name")), name))
			return l;
	return NULL;
}

static long long attached_ls(json_t *gst)
{
	json_t *v = json_object_get(gst, "attachedListenerSets");
	return v ? json_integer_value(v) : -1;
}

/* The route's parent entry whose parentRef has this kind and name. */
static json_t *parent(struct pl_compile_result *r, const char *route, const char *kind, const char *name)
{
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(status_of(r, "HTTPRoute", "default", route), "parents"), i, p) {
		json_t *pr = json_object_get(p, "parentRef");
		if (!strcmp(json_string_value(json_object_get(pr, "kind")), kind) &&
		    !strcmp(json_string_value(json_object_get(pr, "name")), name))
			return p;
	}
	return NULL;
}

static int has_bind(struct pl_compile_result *r, uint16_t port)
{
	for (uint32_t i = 0; r->table && i < r->table->n_binds; i++)
		if (r->table->binds[i].port == port)
			return 1;
	return 0;
}

static void test_not_allowed(void)
{
	/* no allowedListeners: none may attach; from None: likewise */
	const char *const gws[] = { GW(""), GW("  allowedListeners: {namespaces: {from: None}}\n") };
	for (size_t i = 0; i < 2; i++) {
		char yaml[4096];
		snprintf(yaml, sizeof(yaml), "%s%s%s", CLASS, gws[i],
			 LS("default", "ls", "01", "ls-l", "8081", "ls.example"));
		struct pl_compile_result r = run(yaml);
		json_t *ls = status_of(&r, "ListenerSet", "default", "ls");
		CHECK(ls != NULL);
		CHECK(!strcmp(cs(ls, "Accepted"), "False/NotAllowed"));
		CHECK(!strcmp(cs(ls, "Programmed"), "False/NotAllowed"));
		json_t *gst = status_of(&r, "Gateway", "default", "gw");
		CHECK(attached_ls(gst) == (i ? 0 : -1));
		CHECK(!strcmp(cs(gst, "Accepted"), "True/Accepted"));
		CHECK(!has_bind(&r, 8081));
		pl_compile_result_clear(&r);
	}
}

static void test_allowed_namespaces(void)
{
	const char *yaml =
		CLASS GW("  allowedListeners: {namespaces: {from: Same}}\n")
		LS("default", "same", "01", "same-l", "80", "same.example")
		LS("other", "other", "02", "other-l", "80", "other.example");
	struct pl_compile_result r = run(yaml);
	json_t *gst = status_of(&r, "Gateway", "default", "gw");
	CHECK(attached_ls(gst) == 1);
	CHECK(json_array_size(json_object_get(gst, "listeners")) == 1);   /* its own only */
	json_t *same = status_of(&r, "ListenerSet", "default", "same");
	CHECK(!strcmp(cs(same, "Accepted"), "True/Accepted"));
	CHECK(!strcmp(cs(same, "Programmed"), "True/Programmed"));
	json_t *l = listener(same, "same-l");
	CHECK(l && !strcmp(cs(l, "Accepted"), "True/Accepted") && !strcmp(cs(l, "Programmed"), "True/Programmed") &&
	      !strcmp(cs(l, "ResolvedRefs"), "True/ResolvedRefs"));
	json_t *other = status_of(&r, "ListenerSet", "other", "other");
	CHECK(!strcmp(cs(other, "Accepted"), "False/NotAllowed"));
	pl_compile_result_clear(&r);

	/* Selector: by the labels of the ListenerSet's Namespace */
	yaml = CLASS GW("  allowedListeners: {namespaces: {from: Selector, selector: {matchLabels: {ls: ok}}}}\n")
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: picked, labels: {ls: ok}}\n---\n"
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: left}\n---\n"
		LS("picked", "a", "01", "a-l", "80", "a.example")
		LS("left", "b", "02", "b-l", "80", "b.example");
	r = run(yaml);
	CHECK(attached_ls(status_of(&r, "Gateway", "default", "gw")) == 1);
	CHECK(!strcmp(cs(status_of(&r, "ListenerSet", "picked", "a"), "Accepted"), "True/Accepted"));
	CHECK(!strcmp(cs(status_of(&r, "ListenerSet", "left", "b"), "Accepted"), "False/NotAllowed"));
	pl_compile_result_clear(&r);

	/* All; a ListenerSet naming a Gateway that is not ours gets no status */
	yaml = CLASS GW("  allowedListeners: {namespaces: {from: All}}\n")
		LS("x", "a", "01", "a-l", "80", "a.example")
		"apiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {name: stray}\n"
		"spec:\n  parentRef: {name: nope}\n  listeners: [{name: l, port: 80, protocol: HTTP}]\n---\n";
	r = run(yaml);
	CHECK(!strcmp(cs(status_of(&r, "ListenerSet", "x", "a"), "Accepted"), "True/Accepted"));
	CHECK(status_of(&r, "ListenerSet", "default", "stray") == NULL);
	pl_compile_result_clear(&r);
}

static void test_conflicts(void)
{
	/* the Gateway's listener wins over any ListenerSet's; the older ListenerSet over the newer */
	const char *yaml =
		CLASS GW("  allowedListeners: {namespaces: {from: Same}}\n")
		"apiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\n"
		"metadata: {name: ls-b, creationTimestamp: '2024-01-01T00:00:01Z'}\n"
		"spec:\n  parentRef: {name: gw}\n  listeners:\n"
		"  - {name: ok, port: 80, protocol: HTTP, hostname: b.example}\n"
		"  - {name: tcp, port: 80, protocol: TCP}\n"   /* conflicted alone: the set's others stay */
		"  - {name: vs-gw, port: 80, protocol: HTTP, hostname: gw.example}\n"
		"  - {name: vs-ls, port: 80, protocol: HTTP, hostname: shared.example}\n---\n"
		/* same creation time, name after ls-b: newer */
		"apiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\n"
		"metadata: {name: ls-c, creationTimestamp: '2024-01-01T00:00:01Z'}\n"
		"spec:\n  parentRef: {name: gw}\n  listeners:\n"
		"  - {name: vs-ls, port: 80, protocol: HTTP, hostname: shared.example}\n---\n"
		/* created before ls-b, yet it conflicts with the Gateway on protocol only */
		"apiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\n"
		"metadata: {name: ls-z, creationTimestamp: '2024-01-01T00:00:00Z'}\n"
		"spec:\n  parentRef: {name: gw}\n  listeners:\n"
		"  - {name: tcp, port: 80, protocol: TCP}\n---\n";
	struct pl_compile_result r = run(yaml);
	json_t *gst = status_of(&r, "Gateway", "default", "gw");
	CHECK(attached_ls(gst) == 1);
	CHECK(!strcmp(cs(listener(gst, "gw-l"), "Conflicted"), "False/NoConflicts"));
	json_t *b = status_of(&r, "ListenerSet", "default", "ls-b");
	CHECK(!strcmp(cs(b, "Accepted"), "True/ListenersNotValid"));
	CHECK(!strcmp(cs(b, "Programmed"), "True/Programmed"));
	CHECK(!strcmp(cs(listener(b, "ok"), "Programmed"), "True/Programmed"));
	CHECK(!strcmp(cs(listener(b, "vs-gw"), "Conflicted"), "True/HostnameConflict"));
	CHECK(!strcmp(cs(listener(b, "vs-gw"), "Programmed"), "False/HostnameConflict"));
	CHECK(!strcmp(cs(listener(b, "vs-gw"), "Accepted"), "False/HostnameConflict"));
	CHECK(!strcmp(cs(listener(b, "vs-ls"), "Conflicted"), "False/NoConflicts"));
	CHECK(!strcmp(cs(listener(b, "tcp"), "Conflicted"), "True/ProtocolConflict"));
	CHECK(!strcmp(cs(listener(b, "ok"), "Conflicted"), "False/NoConflicts"));
	json_t *cst = status_of(&r, "ListenerSet", "default", "ls-c");
	CHECK(!strcmp(cs(cst, "Accepted"), "False/ListenersNotValid"));
	CHECK(!strcmp(cs(cst, "Programmed"), "False/ListenersNotValid"));
	CHECK(!strcmp(cs(listener(cst, "vs-ls"), "Conflicted"), "True/HostnameConflict"));
	json_t *z = status_of(&r, "ListenerSet", "default", "ls-z");
	CHECK(!strcmp(cs(z, "Accepted"), "False/ListenersNotValid"));
	CHECK(!strcmp(cs(listener(z, "tcp"), "Conflicted"), "True/ProtocolConflict"));
	pl_compile_result_clear(&r);
}

static void test_routes(void)
{
	const char *yaml =
		CLASS GW("  allowedListeners: {namespaces: {from: All}}\n")
		"apiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {name: ls}\n"
		"spec:\n  parentRef: {name: gw}\n  listeners:\n"
		"  - {name: a, port: 8081, protocol: HTTP, hostname: a.example}\n"
		"  - {name: b, port: 8081, protocol: HTTP, hostname: b.example, "
		"allowedRoutes: {namespaces: {from: Same}}}\n---\n"
		/* through the ListenerSet, one listener */
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: via-ls}\n"
		"spec:\n  parentRefs: [{kind: ListenerSet, group: gateway.networking.k8s.io, name: ls, sectionName: a}]\n"
		"  rules: [{backendRefs: [{name: svc, port: 8080}]}]\n---\n"
		/* the Gateway and the ListenerSet: every listener of each */
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: both}\n"
		"spec:\n  parentRefs: [{name: gw}, {kind: ListenerSet, group: gateway.networking.k8s.io, name: ls}]\n"
		"  rules: [{backendRefs: [{name: svc, port: 8080}]}]\n---\n"
		/* a Gateway parentRef does not reach ListenerSet listeners */
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: gw-section}\n"
		"spec:\n  parentRefs: [{name: gw, sectionName: a}]\n"
		"  rules: [{backendRefs: [{name: svc, port: 8080}]}]\n---\n"
		/* another namespace: listener a (All) takes it, b (Same as the ListenerSet) does not */
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: far, namespace: far}\n"
		"spec:\n  parentRefs: [{kind: ListenerSet, name: ls, namespace: default, sectionName: b}]\n"
		"  rules: [{backendRefs: [{name: svc, namespace: default, port: 8080}]}]\n---\n";
	struct pl_compile_result r = run(yaml);
	CHECK(has_bind(&r, 80) && has_bind(&r, 8081));
	json_t *ls = status_of(&r, "ListenerSet", "default", "ls");
	CHECK(json_integer_value(json_object_get(listener(ls, "a"), "attachedRoutes")) == 2);
	CHECK(json_integer_value(json_object_get(listener(ls, "b"), "attachedRoutes")) == 1);
	json_t *gst = status_of(&r, "Gateway", "default", "gw");
	CHECK(json_integer_value(json_object_get(listener(gst, "gw-l"), "attachedRoutes")) == 1);
	CHECK(!strcmp(cs(parent(&r, "via-ls", "ListenerSet", "ls"), "Accepted"), "True/Accepted"));
	CHECK(!strcmp(cs(parent(&r, "both", "ListenerSet", "ls"), "Accepted"), "True/Accepted"));
	CHECK(!strcmp(cs(parent(&r, "both", "Gateway", "gw"), "Accepted"), "True/Accepted"));
	CHECK(!strcmp(cs(parent(&r, "gw-section", "Gateway", "gw"), "Accepted"), "False/NoMatchingParent"));
	json_t *far = json_array_get(json_object_get(status_of(&r, "HTTPRoute", "far", "far"), "parents"), 0);
	CHECK(!strcmp(cs(far, "Accepted"), "False/NotAllowedByListeners"));
	/* port 8081 serves a.example and b.example */
	int hosts = 0;
	for (uint32_t i = 0; r.table && i < r.table->n_binds; i++)
		if (r.table->binds[i].port == 8081)
			hosts = (int)r.table->binds[i].n_listeners;
	CHECK(hosts == 2);
	pl_compile_result_clear(&r);

	/* a route naming a ListenerSet that is not accepted */
	yaml = CLASS GW("") LS("default", "ls", "01", "a", "8081", "a.example")
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: via-ls}\n"
		"spec:\n  parentRefs: [{kind: ListenerSet, group: gateway.networking.k8s.io, name: ls}]\n"
		"  rules: [{backendRefs: [{name: svc, port: 8080}]}]\n---\n";
	r = run(yaml);
	CHECK(!strcmp(cs(parent(&r, "via-ls", "ListenerSet", "ls"), "Accepted"), "False/NoMatchingParent"));
	pl_compile_result_clear(&r);
}

static void test_reference_grant(void)
{
	/* a grant from Gateways does not cover a ListenerSet; one from ListenerSets does */
	const char *head =
		CLASS GW("  allowedListeners: {namespaces: {from: All}}\n")
		"apiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {name: ls}\n"
		"spec:\n  parentRef: {name: gw}\n  listeners:\n"
		"  - {name: tls, port: 443, protocol: HTTPS, hostname: s.example, "
		"tls: {certificateRefs: [{name: cert, namespace: certs}]}}\n---\n"
		"apiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: certs}\n"
		"spec:\n  from: [{group: gateway.networking.k8s.io, namespace: default, kind: ";
	const char *tail = "}]\n  to: [{group: '', kind: Secret}]\n---\n";
	char yaml[4096];
	snprintf(yaml, sizeof(yaml), "%s%s%s", head, "Gateway", tail);
	struct pl_compile_result r = run(yaml);
	json_t *ls = status_of(&r, "ListenerSet", "default", "ls");
	CHECK(!strcmp(cs(listener(ls, "tls"), "ResolvedRefs"), "False/RefNotPermitted"));
	CHECK(!strcmp(cs(ls, "Accepted"), "False/ListenersNotValid"));
	pl_compile_result_clear(&r);
	snprintf(yaml, sizeof(yaml), "%s%s%s", head, "ListenerSet", tail);
	r = run(yaml);
	ls = status_of(&r, "ListenerSet", "default", "ls");
	/* granted: the Secret itself is missing now */
	CHECK(!strcmp(cs(listener(ls, "tls"), "ResolvedRefs"), "False/InvalidCertificateRef"));
	pl_compile_result_clear(&r);
}

/* A ListenerSet put or deleted between compiles: the incremental compiler equals a full compile. */
static void test_incremental(void)
{
	const char *base =
		CLASS GW("  allowedListeners: {namespaces: {from: Same}}\n")
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n"
		"spec:\n  parentRefs: [{kind: ListenerSet, name: ls}]\n"
		"  rules: [{backendRefs: [{name: svc, port: 8080}]}]\n---\n";
	const char *lsy = LS("default", "ls", "01", "a", "8081", "a.example");
	struct pl_store *s = load(base);
	struct pl_compile_opts o = { .now = "2024-01-01T00:00:00Z", .ephemeral = 1 };
	struct pl_compiler *pc = pl_compiler_new(&o);
	for (int step = 0; step < 3; step++) {
		char err[256];
		if (step == 1)
			CHECK(pl_store_load_yaml(s, lsy, strlen(lsy), "ls.yaml", err, sizeof(err)) == 1);
		if (step == 2)
			CHECK(pl_store_delete(s, PL_K_LISTENERSET, "default", "ls") == 0);
		struct pl_compile_result ri, rf;
		pl_compiler_run(pc, s, &ri);
		pl_compile(s, &o, &rf);
		CHECK(json_equal(ri.statuses, rf.statuses));
		CHECK(has_bind(&ri, 8081) == (step == 1));
		CHECK(!strcmp(cs(json_array_get(json_object_get(status_of(&ri, "HTTPRoute", "default", "r"), "parents"), 0),
				 "Accepted"), step == 1 ? "True/Accepted" : "False/NoMatchingParent"));
		pl_compile_result_clear(&ri);
		pl_compile_result_clear(&rf);
	}
	pl_compiler_free(pc);
	pl_store_free(s);
}

int main(void)
{
	pl_log_set_level(PL_LOG_ERROR);
	test_not_allowed();
	test_allowed_namespaces();
	test_conflicts();
	test_routes();
	test_reference_grant();
	test_incremental();
	if (fails) {
		fprintf(stderr, "test_listenerset: %d check(s) failed\n", fails);
		return 1;
	}
	printf("test_listenerset: ok\n");
	return 0;
}
