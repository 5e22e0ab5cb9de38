/*
 * Bind-result registry (bindreg.h). A small array under a mutex: it changes
 * only when listeners open or close, and is read once per status pass.
 */
#include "pl.h"
#include "bindreg.h"

#include <pthread.h>

struct entry {
	char address[48];    /* INET6_ADDRSTRLEN + slack */
	uint16_t port;
	enum pl_bind_state st;
	int err;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *ents;
static size_t n_ents, cap_ents;
static void (*hook)(void *);
static void *hook_data;

static struct entry *find(const char *address, uint16_t port)
{
	for (size_t i = 0; i < n_ents; i++)
		if (ents[i].port == port && strcmp(ents[i].address, address) == 0)
			return &ents[i];
	return NULL;
}

static void notify(void)
{
	void (*fn)(void *);
	void *data;
	pthread_mutex_lock(&lock);
	fn = hook;
	data = hook_data;
	pthread_mutex_unlock(&lock);
	if (fn)
		fn(data);
}

void pl_bindreg_set(const char *address, uint16_t port, int ok, int err)
{
	if (!address)
		address = "0.0.0.0";
	if (strlen(address) >= sizeof(ents[0].address))
		return;
	enum pl_bind_state st = ok ? PL_BIND_OK : PL_BIND_FAILED;
	int changed = 0;
	pthread_mutex_lock(&lock);
	struct entry *e = find(address, port);
	if (!e && n_ents < PL_BINDREG_MAX) {
		if (n_ents == cap_ents) {
			size_t nc = cap_ents ? cap_ents * 2 : 16;
			struct entry *ne = realloc(ents, nc * sizeof(*ne));
			if (ne) {
				ents = ne;
				cap_ents = nc;
			}
		}
		if (n_ents < cap_ents) {
			e = &ents[n_ents++];
			memset(e, 0, sizeof(*e));
			snprintf(e->address, sizeof(e->address), "%s", address);
			e->port = port;
		}
	}
	if (e && (e->st != st || e->err != err)) {
		e->st = st;
		e->err = ok ? 0 : err;
		changed = 1;
	}
	pthread_mutex_unlock(&lock);
	if (changed)
		notify();
}

void pl_bindreg_clear(const char *address, uint16_t port)
{
	if (!address)
		address = "0.0.0.0";
	int changed = 0;
	pthread_mutex_lock(&lock);
	struct entry *e = find(address, port);
	if (e) {
		*e = ents[--n_ents];
		changed = 1;
	}
	pthread_mutex_unlock(&lock);
	if (changed)
		notify();
}

enum pl_bind_state pl_bindreg_get(const char *address, uint16_t port, int *err)
{
	if (!address)
		address = "0.0.0.0";
	enum pl_bind_state st = PL_BIND_UNKNOWN;
	pthread_mutex_lock(&lock);
	struct entry *e = find(address, port);
	if (e) {
		st = e->st;
		if (err)
			*err = e->err;
	}
	pthread_mutex_unlock(&lock);
	return st;
}

void pl_bindreg_on_change(void (*fn)(void *data), void *data)
{
	pthread_mutex_lock(&lock);
	hook = fn;
	hook_data = data;
	pthread_mutex_unlock(&lock);
}
