#include "pl.h"
#include "manifests.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

struct file {
	char *path;
	struct stat st;
};

struct list {
	struct file *v;
	size_t n, cap;
};

static void list_free(struct list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].path);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

static int has_ext(const char *name)
{
	size_t n = strlen(name);
	static const char *const exts[] = { ".yaml", ".yml", ".json" };
	for (size_t i = 0; i < PL_ARRAY_LEN(exts); i++) {
		size_t e = strlen(exts[i]);
		if (n > e && strcmp(name + n - e, exts[i]) == 0)
			return 1;
	}
	return 0;
}

static int add(struct list *l, const char *path, const struct stat *st, char *err, size_t errlen)
{
	if (l->n >= PL_MANIFESTS_MAX_FILES) {
		snprintf(err, errlen, "%s: more than %d manifest files", path, PL_MANIFESTS_MAX_FILES);
		return -1;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		struct file *v = realloc(l->v, cap * sizeof(*v));
		if (!v) {
			snprintf(err, errlen, "%s: out of memory", path);
			return -1;
		}
		l->v = v;
		l->cap = cap;
	}
	char *p = strdup(path);
	if (!p) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	l->v[l->n].path = p;
	l->v[l->n].st = *st;
	l->n++;
	return 0;
}

static int walk(struct list *l, const char *dir, int depth, char *err, size_t errlen)
{
	if (depth > PL_MANIFESTS_MAX_DEPTH) {
		snprintf(err, errlen, "%s: directories nested deeper than %d", dir, PL_MANIFESTS_MAX_DEPTH);
		return -1;
	}
	DIR *d = opendir(dir);
	if (!d) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char path[4096];
		int n = snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (n < 0 || (size_t)n >= sizeof(path)) {
			snprintf(err, errlen, "%s: path too long", dir);
			rc = -1;
			break;
		}
		struct stat st;
		if (stat(path, &st) != 0)
			continue;   /* dangling symlink or file removed meanwhile */
		if (S_ISDIR(st.st_mode))
			rc = walk(l, path, depth + 1, err, errlen);
		else if (S_ISREG(st.st_mode) && has_ext(de->d_name))
			rc = add(l, path, &st, err, errlen);
		if (rc)
			break;
	}
	closedir(d);
	return rc;
}

static int cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct file *)a)->path, ((const struct file *)b)->path);
}

static int scan(const char *path, struct list *l, char *err, size_t errlen)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	int rc;
	if (S_ISDIR(st.st_mode))
		rc = walk(l, path, 0, err, errlen);
	else if (S_ISREG(st.st_mode))
		rc = add(l, path, &st, err, errlen);
	else {
		snprintf(err, errlen, "%s: not a file or directory", path);
		rc = -1;
	}
	if (rc) {
		list_free(l);
		return -1;
	}
	qsort(l->v, l->n, sizeof(l->v[0]), cmp_file);
	return 0;
}

int pl_manifests_signature(const char *path, uint64_t *sig, char *err, size_t errlen)
{
	struct list l = { 0 };
	if (scan(path, &l, err, errlen) != 0)
		return -1;
	uint64_t h = PL_FNV_INIT;
	for (size_t i = 0; i < l.n; i++) {
		const struct stat *st = &l.v[i].st;
		uint64_t f[5] = { (uint64_t)st->st_dev, (uint64_t)st->st_ino, (uint64_t)st->st_size,
				  (uint64_t)st->st_mtim.tv_sec, (uint64_t)st->st_mtim.tv_nsec };
		h = pl_fnv1a(h, l.v[i].path, strlen(l.v[i].path) + 1);
		h = pl_fnv1a(h, f, sizeof(f));
	}
	h = pl_fnv1a(h, &l.n, sizeof(l.n));
	list_free(&l);
	*sig = h;
	return 0;
}

int pl_manifests_read_file(const char *path, size_t max, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* a regular file is read into one buffer of its size (+1 to see EOF); anything else grows */
	size_t cap = 64 * 1024, n = 0;
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0) {
		if ((uint64_t)st.st_size > max) {
			close(fd);
			return -EFBIG;
		}
		cap = (size_t)st.st_size + 1;
	}
	if (cap > max)
		cap = max + 1;   /* one byte more than allowed tells "too large" from "exactly max" */
	int e = -ENOMEM;
	char *buf = malloc(cap + 1);
	while (buf) {
		if (n == cap) {
			if (n > max) {
				e = -EFBIG;
				break;
			}
			size_t nc = cap > max / 2 ? max + 1 : cap * 2;
			char *nb = realloc(buf, nc + 1);
			if (!nb) {
				e = -ENOMEM;
				break;
			}
			buf = nb;
			cap = nc;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			e = -errno;
			break;
		}
		if (r == 0) {
			close(fd);
			buf[n] = '\0';
			*out = buf;
			*len = n;
			return 0;
		}
		n += (size_t)r;
	}
	free(buf);
	close(fd);
	return e;
}

int pl_manifests_load(const char *path, struct pl_store *s, char *err, size_t errlen)
{
	struct list l = { 0 };
	if (scan(path, &l, err, errlen) != 0)
		return -1;
	size_t budget = PL_MANIFESTS_MAX_BYTES;
	int rc = 0;
	for (size_t i = 0; i < l.n; i++) {
		size_t len;
		char *buf;
		int e = pl_manifests_read_file(l.v[i].path, budget, &buf, &len);
		if (e < 0) {
			if (e == -EFBIG)
				snprintf(err, errlen, "%s: manifests larger than %u bytes in total", l.v[i].path,
					 PL_MANIFESTS_MAX_BYTES);
			else
				snprintf(err, errlen, "%s: %s", l.v[i].path, strerror(-e));
			rc = -1;
			break;
		}
		budget -= len;
		int r = pl_store_load_yaml(s, buf, len, l.v[i].path, err, errlen);
		free(buf);
		if (r < 0) {
			rc = -1;
			break;
		}
	}
	if (rc == 0)
		rc = (int)l.n;
	list_free(&l);
	return rc;
}
