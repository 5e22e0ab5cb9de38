/*
 * The control plane's public face, used only by main.c.
 *
 * Standalone mode: objects come from YAML files under cfg->manifests (a file
 * or a directory, read recursively for *.yaml / *.yml / *.json, in name order).
 */
#ifndef PL_CONTROLLER_H
#define PL_CONTROLLER_H

#include <stdio.h>

struct pl_ctl_config {
	const char *manifests;          /* file or directory */
	const char *controller_name;    /* GatewayClass controllerName served; NULL = every class */
	unsigned poll_ms;               /* how often to look for changed files (default 200) */
};

/*
 * pylon check: load, compile, print every object's status conditions to out
 * (YAML, as `kubectl get -o yaml` shows .status), return 0 when every object
 * is accepted and every reference resolved, 1 when some are not, 2 when the
 * manifests cannot be read or parsed.
 */
int pl_ctl_check(const struct pl_ctl_config *cfg, FILE *out);

/*
 * pylon run: load and compile synchronously, publish the first table
 * (pl_table_publish), then start the controller thread that watches the files
 * and publishes a new table on every successful recompile. A load or compile
 * error keeps the last good table and logs why. Returns 0, or -1 when the
 * first load fails (nothing to serve; the caller exits).
 */
int pl_ctl_start(const struct pl_ctl_config *cfg);
void pl_ctl_stop(void);
/* 1 once the first full compile was published. Any thread. */
int pl_ctl_ready(void);

#endif
