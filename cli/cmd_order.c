/* usbforge order add / confirm / show, jobs, job show. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/json.h"
#include "db/content.h"
#include "db/db.h"
#include "db/jobstate.h"
#include "db/orders.h"
#include "image/blksrc.h"
#include "stages/stage.h"
#include "fatfs/fat32.h"
#include "util/macro.h"
#include "util/openfile.h"
#include "util/name.h"
#include "util/size.h"
#include "util/utf8.h"

/* The smallest stick an order may be for: below 1 MiB there is no FAT32 (nor a stick). The
 * largest: a device's size is an off_t, so no stick holds more than 2^63 - 1 bytes. */
#define ORDER_MIN_CAPACITY (UINT64_C(1) << 20)
#define ORDER_MAX_CAPACITY ((uint64_t)INT64_MAX)

/* Characters of s as the database counts them: bytes that do not continue a UTF-8 sequence. */
static size_t utf8_length(const char *s)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		n += (*p & 0xC0) != 0x80;
	return n;
}

/* 1 to 64 characters (VARCHAR(64)) of well-formed UTF-8, no control character (C0, DEL, C1),
 * no space. */
static bool order_number_ok(const char *s)
{
	size_t n = utf8_length(s);
	if (n == 0 || n > 64 || utf8_has_controls(s) || strchr(s, ' '))
		return false;
	return true;
}

/* Why a file of 4 GiB or more can never be on a stick (content orders are FAT32). */
#define FAT32_LIMIT "FAT32 holds files of at most 4 GiB - 1 byte (4294967295 bytes)"
#define MAX_NAMED   10 /* files named in one warning */

/* The warning for a category some of whose n files (big[0..n_big): those of 4 GiB or more, not
 * all of them) will be skipped by the selection, malloc'd into *ret. 0 or -ENOMEM. */
static int skip_warning(const char *category, int64_t n, const struct content_item *big, size_t n_big, char **ret)
{
	char *w = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&w, &len);
	if (!f)
		return -ENOMEM;
	fprintf(f, "category '%s': %zu of its %lld files %s 4 GiB or more and will be skipped (" FAT32_LIMIT "): ",
		category, n_big, (long long)n, n_big == 1 ? "is" : "are");
	for (size_t i = 0; i < n_big; i++) {
		if (i == MAX_NAMED) {
			fprintf(f, ", and %zu more", n_big - MAX_NAMED);
			break;
		}
		fprintf(f, "%s%s (%llu bytes)", i ? ", " : "", big[i].rel_path, (unsigned long long)big[i].size);
	}
	if (fclose(f) != 0 || !w) {
		free(w);
		return -ENOMEM;
	}
	*ret = w;
	return 0;
}

#define ADD_USAGE                                                                                                      \
	"NUMBER --capacity SIZE [--quantity N] [--customer NAME] [--station S] (--image PATH | --category C … "      \
	"[--item ID …])"

int cmd_order_add(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "capacity", required_argument, NULL, 'C' }, { "quantity", required_argument, NULL, 'q' },
		{ "customer", required_argument, NULL, 'u' }, { "station", required_argument, NULL, 's' },
		{ "image", required_argument, NULL, 'i' },    { "category", required_argument, NULL, 'k' },
		{ "item", required_argument, NULL, 'I' },     {},
	};
	struct order_new o = { .quantity = 1 };
	json_auto_t *cats = json_array(), *items = json_array(), *warnings = json_array();
	_cleanup_free_ char *spec = NULL, *image_abs = NULL;
	bool have_cap = false;
	_cleanup_(db_closep) struct db *db = NULL;
	int opt, r;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		long long v;
		switch (opt) {
		case 'C':
			if (parse_size(optarg, &o.capacity_bytes) < 0 || o.capacity_bytes == 0)
				return cli_usage_error("order add", ADD_USAGE,
						       "--capacity: '%s' is not a size (e.g. 16G, 16GiB, 512M)",
						       optarg);
			if (o.capacity_bytes < ORDER_MIN_CAPACITY || o.capacity_bytes > ORDER_MAX_CAPACITY)
				return cli_usage_error("order add", ADD_USAGE,
						       "--capacity: '%s' (%llu bytes) is not the size of a stick: it must be "
						       "between 1 MiB (1048576 bytes) and 8 EiB (%llu bytes)",
						       optarg, (unsigned long long)o.capacity_bytes,
						       (unsigned long long)ORDER_MAX_CAPACITY);
			have_cap = true;
			break;
		case 'q':
			if (cli_parse_id(optarg, &v) < 0 || v > 10000)
				return cli_usage_error("order add", ADD_USAGE,
						       "--quantity: '%s' is not a number between 1 and 10000", optarg);
			o.quantity = (int)v;
			break;
		case 'u':
			o.customer = optarg;
			break;
		case 's':
			/* the rule of `station` in the config: an order for any other name could
			 * never be claimed by a kiosk */
			if (!name_valid(optarg))
				return cli_usage_error("order add", ADD_USAGE,
						       "--station: '%s' is not a station name: 1 to %d letters, digits, "
						       "'.', '_', ':' or '-' (as 'station' in the config)",
						       optarg, NAME_MAX_LEN);
			o.station = optarg;
			break;
		case 'i':
			o.image_path = optarg;
			break;
		case 'k':
			if (!*optarg)
				return cli_usage_error("order add", ADD_USAGE, "--category: empty name");
			json_array_append_new(cats, json_string(optarg));
			break;
		case 'I':
			if (cli_parse_id(optarg, &v) < 0)
				return cli_usage_error("order add", ADD_USAGE, "--item: '%s' is not an item id",
						       optarg);
			json_array_append_new(items, json_integer(v));
			break;
		default:
			return cli_usage_error("order add", ADD_USAGE, "bad option");
		}
	}
	if (optind != argc - 1)
		return cli_usage_error("order add", ADD_USAGE,
				       optind >= argc ? "missing NUMBER" : "unexpected argument '%s'",
				       argv[optind + 1 < argc ? optind + 1 : optind]);
	o.number = argv[optind];
	if (!order_number_ok(o.number))
		return cli_usage_error("order add", ADD_USAGE, "NUMBER '%s': 1 to 64 printable characters, no spaces",
				       o.number);
	if (!have_cap)
		return cli_usage_error("order add", ADD_USAGE, "--capacity is required");
	bool content = json_array_size(cats) || json_array_size(items);
	if (!!o.image_path == content)
		return cli_usage_error("order add", ADD_USAGE, "give either --image or --category/--item");
	r = cli_db_open(c, &db);
	if (r)
		return r;
	if (o.image_path) {
		/* The image must lie beneath content.images, and be opened here exactly as the daemon
		 * will open it (no "..", no symlink, a regular file that decodes to something); its
		 * decoded size is what a stick must hold. */
		const char *root = c->cfg.content.images;
		_cleanup_free_ char *err = NULL, *cwd = NULL, *lexical = NULL, *root_real = NULL;
		struct blksrc *src = NULL;
		if (o.image_path[0] != '/' &&
		    (!(cwd = getcwd(NULL, 0)) || asprintf(&lexical, "%s/%s", cwd, o.image_path) < 0))
			return cli_error(CLI_EXIT_FAIL, "ORDER_INVALID: image '%s': %m", o.image_path);
		const char *abs = lexical ? lexical : o.image_path;
		const char *rel = path_beneath(root, abs);
		if (!rel && (root_real = realpath(root, NULL)))
			rel = path_beneath(root_real, abs); /* e.g. run from inside a symlinked root */
		if (!rel)
			return cli_error(CLI_EXIT_FAIL,
					 "ORDER_INVALID: image '%s' is not beneath content.images ('%s'): orders may only "
					 "name images there",
					 o.image_path, root);
		size_t rn = strlen(root);
		while (rn > 1 && root[rn - 1] == '/')
			rn--;
		if (asprintf(&image_abs, "%.*s/%s", (int)rn, root, rel) < 0)
			return cli_error(CLI_EXIT_FAIL, "out of memory");
		struct job_spec probe = { .image_path = image_abs, .image_root = (char *)root };
		int q = job_spec_open_image(&probe, &src, &err);
		if (q < 0)
			return cli_error(CLI_EXIT_FAIL, "ORDER_INVALID: %s", err ? err : strerror(-q));
		o.image_bytes = src->size;
		blksrc_free(src);
		o.image_path = image_abs;
	} else {
		size_t i;
		json_t *v;
		/* A file of 4 GiB or more is never written (FAT32): an explicit item of that size is
		 * refused, and so is a category of which nothing else could be written; a category
		 * that has smaller files too is taken with a warning naming what will be skipped. */
		json_array_foreach(cats, i, v)
		{
			const char *cat = json_string_value(v);
			int64_t n = 0;
			struct content_item *big = NULL;
			size_t n_big = 0;
			int q = content_category_count(db, cat, &n);
			if (q == 0 && n > 0)
				q = content_category_larger(db, cat, FAT_MAX_FILE_SIZE, &big, &n_big);
			if (q == -ENOMEM)
				return q;
			if (q < 0)
				return cli_error(CLI_EXIT_FAIL, "DB_UNAVAILABLE: %s", db_error(db));
			if (n == 0)
				return cli_error(
					CLI_EXIT_FAIL,
					"ORDER_INVALID: category '%s' has no active content (run 'usbforge content scan')",
					cat);
			_cleanup_free_ char *w = NULL;
			q = 0;
			if (n_big == (size_t)n)
				q = cli_error(CLI_EXIT_FAIL,
					      "ORDER_INVALID: category '%s': nothing of it could ever be written: %s %lld "
					      "file%s 4 GiB or more, and " FAT32_LIMIT,
					      cat, n == 1 ? "its" : "all its", (long long)n, n == 1 ? " is" : "s are");
			else if (n_big && (skip_warning(cat, n, big, n_big, &w) < 0 ||
					   json_array_append_new(warnings, json_string_nocheck(w)) < 0))
				q = -ENOMEM;
			content_items_free(big, n_big);
			if (n_big == (size_t)n || q == -ENOMEM)
				return q;
		}
		json_array_foreach(items, i, v)
		{
			bool active = false;
			int q = content_item_active(db, json_integer_value(v), &active);
			if (q < 0 && q != -ENOENT)
				return cli_error(CLI_EXIT_FAIL, "DB_UNAVAILABLE: %s", db_error(db));
			if (!active)
				return cli_error(CLI_EXIT_FAIL, "ORDER_INVALID: content item %lld %s",
						 (long long)json_integer_value(v),
						 q == -ENOENT ? "does not exist" : "is inactive (its file is gone)");
			uint64_t size = 0;
			_cleanup_free_ char *rel = NULL;
			q = content_item_size(db, json_integer_value(v), &size, &rel);
			if (q == -ENOMEM)
				return q;
			if (q < 0)
				return cli_error(CLI_EXIT_FAIL, "DB_UNAVAILABLE: %s", db_error(db));
			if (size > FAT_MAX_FILE_SIZE)
				return cli_error(CLI_EXIT_FAIL,
						 "ORDER_INVALID: content item %lld (%s, %llu bytes) could never be written: "
						 "it is 4 GiB or more, and " FAT32_LIMIT,
						 (long long)json_integer_value(v), rel, (unsigned long long)size);
		}
		json_t *js = json_pack("{s:O, s:O}", "categories", cats, "items", items);
		spec = json_dumps(js, JSON_COMPACT);
		json_decref(js);
		o.content_spec = spec;
	}
	int64_t id = 0;
	int q = order_add(db, &o, &id);
	if (q == -EEXIST)
		return cli_error(CLI_EXIT_FAIL, "order '%s' already exists", o.number);
	if (q < 0)
		return cli_error(CLI_EXIT_FAIL, "cannot add order '%s': %s", o.number, db_error(db));
	size_t wi;
	json_t *wv;
	json_array_foreach(warnings, wi, wv) cli_warning("order '%s': %s", o.number, json_string_value(wv));
	struct record shown = { 0 };
	if (c->json && order_show(db, o.number, &shown) == 0) {
		cli_print_json(cli_json_record(&shown, "jobs", NULL));
		record_done(&shown);
	} else if (cli_line(stdout,
			    "order %s added (id %lld, %d unit%s, pending: confirm it with 'usbforge order confirm %s')",
			    o.number, (long long)id, o.quantity, o.quantity == 1 ? "" : "s", o.number) < 0)
		return -ENOMEM;
	return CLI_EXIT_OK;
}

#define CORRELATION_ID_MAX 128 /* processing_jobs.correlation_id VARCHAR(128) */

int cmd_order_confirm(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = { { "correlation-id", required_argument, NULL, 'r' }, {} };
	const char *corr = NULL;
	struct db *db = NULL;
	struct order_confirmation conf = { 0 };
	int opt, r;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt != 'r')
			return cli_usage_error("order confirm", "NUMBER [--correlation-id ID]", "bad option");
		corr = optarg;
	}
	if (optind != argc - 1)
		return cli_usage_error("order confirm", "NUMBER [--correlation-id ID]", "expected one order NUMBER");
	if (corr && utf8_length(corr) > CORRELATION_ID_MAX)
		return cli_usage_error("order confirm", "NUMBER [--correlation-id ID]",
				       "--correlation-id: at most %d characters (got %zu)", CORRELATION_ID_MAX,
				       utf8_length(corr));
	r = cli_db_open(c, &db);
	if (r)
		return r;
	r = order_confirm(db, argv[optind], corr, 1 + (int)c->cfg.retry.n_delays, cli_actor(), &conf);
	if (r == -ENOENT) {
		db_close(db);
		return cli_error(CLI_EXIT_NOTFOUND, "order '%s' not found", argv[optind]);
	}
	if (r == -ECANCELED) {
		db_close(db);
		return cli_error(CLI_EXIT_FAIL, "order '%s' is cancelled and cannot be confirmed", argv[optind]);
	}
	if (r < 0) {
		cli_error(CLI_EXIT_FAIL, "cannot confirm order '%s': %s", argv[optind], db_error(db));
		db_close(db);
		return CLI_EXIT_FAIL;
	}
	db_close(db);
	json_t *res = cli_json_confirmation(&conf);
	order_confirmation_done(&conf);
	if (!res)
		return cli_error(CLI_EXIT_FAIL, "out of memory");
	if (c->json) {
		json_t *out = json_pack("{s:O, s:O}", "order_number", json_object_get(res, "order_number"), "jobs",
					json_object_get(res, "jobs"));
		json_decref(res);
		return cli_print_json(out);
	}
	size_t i;
	json_t *j;
	static const char *const hdr[] = { "JOB", "UNIT", "STATUS" };
	struct table *t = NULL;
	r = cli_line(stdout, "order %s confirmed: %zu job%s%s", argv[optind],
		     json_array_size(json_object_get(res, "jobs")),
		     json_array_size(json_object_get(res, "jobs")) == 1 ? "" : "s",
		     json_integer_value(json_object_get(res, "created")) ? ""
									 : " (already confirmed, nothing created)");
	if (r == 0)
		r = table_new(3, hdr, &t);
	json_array_foreach(json_object_get(res, "jobs"), i, j)
	{
		char id[24], unit[24];
		if (r < 0)
			break;
		snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(j, "id")));
		snprintf(unit, sizeof(unit), "%lld", (long long)json_integer_value(json_object_get(j, "unit_index")));
		r = table_addf(t, id, unit, json_string_value(json_object_get(j, "status")));
	}
	if (r >= 0)
		r = table_print(t, stdout);
	table_free(t);
	json_decref(res);
	return r < 0 ? r : CLI_EXIT_OK;
}

/* Any JSON value as the text of a table cell, malloc'd into *ret (NULL for a missing value or
 * JSON null: the table prints "-"). 0 or -ENOMEM. */
static int cell(json_t *v, char **ret)
{
	char *s = NULL;
	if (!v || json_is_null(v)) {
		*ret = NULL;
		return 0;
	}
	if (json_is_string(v))
		s = strdup(json_string_value(v));
	else if (json_is_integer(v)) {
		if (asprintf(&s, "%lld", (long long)json_integer_value(v)) < 0)
			s = NULL;
	} else if (json_is_real(v)) {
		if (asprintf(&s, "%.1f", json_real_value(v)) < 0)
			s = NULL;
	} else
		s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

/* One table row of the given keys of row. 0 or -ENOMEM. */
static int add_row(struct table *t, json_t *row, const char *const *keys, size_t n)
{
	_cleanup_free_ char **cells = calloc(n, sizeof(char *));
	int r = cells ? 0 : -ENOMEM;
	for (size_t k = 0; r == 0 && k < n; k++)
		r = cell(json_object_get(row, keys[k]), &cells[k]);
	if (r == 0)
		r = table_add(t, (const char *const *)cells);
	for (size_t k = 0; cells && k < n; k++)
		free(cells[k]);
	return r;
}

/* Print rows (a JSON array of objects) as a table of the given keys. 0 or -ENOMEM. */
static int print_rows(json_t *rows, const char *const *keys, const char *const *headers, size_t n)
{
	struct table *t = NULL;
	int r = table_new(n, headers, &t);
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row)
	{
		if (r < 0)
			break;
		r = add_row(t, row, keys, n);
	}
	if (r == 0)
		r = table_print(t, stdout);
	table_free(t);
	return r;
}

/* "key: value" lines of an object's members, in the object's order. 0 or -ENOMEM. */
static int print_object(json_t *o, const char *skip)
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
	{
		if (skip && strcmp(k, skip) == 0)
			continue;
		_cleanup_free_ char *s = NULL;
		int r = cell(v, &s);
		if (r < 0)
			return r;
		r = cli_line(stdout, "%-22s %s", k, s ? s : "-");
		if (r < 0)
			return r;
	}
	return 0;
}

int cmd_order_show(struct cli *c, int argc, char **argv)
{
	struct db *db = NULL;
	struct record rec = { 0 };
	if (argc != 2)
		return cli_usage_error("order show", "NUMBER", "expected one order NUMBER");
	int r = cli_db_open(c, &db);
	if (r)
		return r;
	r = order_show(db, argv[1], &rec);
	if (r == -ENOENT) {
		db_close(db);
		return cli_error(CLI_EXIT_NOTFOUND, "order '%s' not found", argv[1]);
	}
	if (r < 0) {
		cli_error(CLI_EXIT_FAIL, "%s", db_error(db));
		db_close(db);
		return CLI_EXIT_FAIL;
	}
	db_close(db);
	json_t *o = cli_json_record(&rec, "jobs", NULL);
	record_done(&rec);
	if (!o)
		return cli_error(CLI_EXIT_FAIL, "out of memory");
	if (c->json) {
		return cli_print_json(o);
	}
	static const char *const keys[] = { "id",	"unit_index", "status", "stage",
					    "progress", "attempts",   "slot",	"error_code" };
	static const char *const hdr[] = { "JOB", "UNIT", "STATUS", "STAGE", "PROGRESS", "ATTEMPTS", "SLOT", "ERROR" };
	r = print_object(o, "jobs");
	if (r == 0) {
		printf("\n");
		r = print_rows(json_object_get(o, "jobs"), keys, hdr, ARRAY_SIZE(keys));
	}
	json_decref(o);
	return r;
}

int cmd_jobs(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = { { "status", required_argument, NULL, 's' },
					      { "limit", required_argument, NULL, 'l' },
					      {} };
	const char *status = NULL;
	long long limit = 100;
	struct db *db = NULL;
	struct db_res *res = NULL;
	int opt, r;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 's') {
			if (job_state_from_name(optarg) < 0)
				return cli_usage_error(
					"jobs", "[--status S] [--limit N]",
					"--status: '%s' is not one of queued, processing, retry, done, failed, cancelled",
					optarg);
			status = optarg;
		} else if (opt == 'l') {
			if (cli_parse_id(optarg, &limit) < 0)
				return cli_usage_error("jobs", "[--status S] [--limit N]",
						       "--limit: '%s' is not a positive number", optarg);
		} else {
			return cli_usage_error("jobs", "[--status S] [--limit N]", "bad option");
		}
	}
	if (optind != argc)
		return cli_usage_error("jobs", "[--status S] [--limit N]", "unexpected argument '%s'", argv[optind]);
	r = cli_db_open(c, &db);
	if (r)
		return r;
	r = jobs_list(db, status, (int)MIN(limit, 100000), &res);
	if (r < 0) {
		cli_error(CLI_EXIT_FAIL, "%s", db_error(db));
		db_close(db);
		return CLI_EXIT_FAIL;
	}
	db_close(db);
	json_t *rows = cli_json_rows(res);
	db_res_free(res);
	if (!rows)
		return cli_error(CLI_EXIT_FAIL, "out of memory");
	if (c->json) {
		return cli_print_json(rows);
	}
	static const char *const keys[] = { "id",	"order_number", "unit_index", "status",	    "stage",
					    "progress", "attempts",	"slot",	      "error_code", "updated_at" };
	static const char *const hdr[] = { "ID",       "ORDER",	   "UNIT", "STATUS", "STAGE",
					   "PROGRESS", "ATTEMPTS", "SLOT", "ERROR",  "UPDATED" };
	r = print_rows(rows, keys, hdr, ARRAY_SIZE(keys));
	json_decref(rows);
	return r;
}

int cmd_job_show(struct cli *c, int argc, char **argv)
{
	long long id;
	struct db *db = NULL;
	struct record rec = { 0 };
	if (argc != 2 || cli_parse_id(argv[1], &id) < 0)
		return cli_usage_error("job show", "ID", "expected one job ID (a positive number)");
	int r = cli_db_open(c, &db);
	if (r)
		return r;
	r = job_show(db, id, &rec);
	if (r == -ENOENT) {
		db_close(db);
		return cli_error(CLI_EXIT_NOTFOUND, "job %lld not found", id);
	}
	if (r < 0) {
		cli_error(CLI_EXIT_FAIL, "%s", db_error(db));
		db_close(db);
		return CLI_EXIT_FAIL;
	}
	db_close(db);
	/* claimable: the claim query's generated column, not a fact about the job */
	json_t *o = cli_json_record(&rec, "items", (const char *const[]){ "claimable", NULL });
	record_done(&rec);
	if (!o)
		return cli_error(CLI_EXIT_FAIL, "out of memory");
	if (c->json) {
		return cli_print_json(o);
	}
	r = print_object(o, "items");
	json_t *items = json_object_get(o, "items");
	if (r == 0 && json_array_size(items)) {
		printf("\n");
		static const char *const keys[] = { "position", "content_item_id", "size_bytes", "dest_path" };
		static const char *const hdr[] = { "POS", "ITEM", "BYTES", "PATH" };
		r = print_rows(items, keys, hdr, ARRAY_SIZE(keys));
	}
	json_decref(o);
	return r;
}
