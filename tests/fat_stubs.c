/* Stand-ins for the two uf_stages functions the FAT suites link against (stage_fail from
 * stages/pipeline.c, blksrc_free from stages/blksrc.c), so that the FAT suites build from a
 * private library of the FAT sources alone. Same contracts as stage.h / blksrc.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "stages/blksrc.h"
#include "stages/stage.h"

enum uf_code stage_fail(struct stage_ctx *ctx, enum uf_code code, const char *fmt, ...)
{
	va_list ap;
	char *m = NULL;

	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	free(ctx->message);
	ctx->message = m;
	ctx->code = code;
	return code;
}

struct blksrc *blksrc_free(struct blksrc *s)
{
	if (s)
		s->ops->free(s);
	return NULL;
}
