/* Implementation of db/schema.h. Each migration is a list of statements; a migration's
 * statements are DDL (which MariaDB commits implicitly), so each is written to be re-runnable
 * (IF NOT EXISTS / OR REPLACE) and the version row is inserted last: a migration interrupted
 * half-way is simply applied again. */
#include "db/schema.h"

#include <errno.h>
#include <mysqld_error.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/macro.h"

/* Claim: a runnable job (queued, or retry whose time has come) for this station or any, that
 * fits the stick; the largest nominal capacity first, then the oldest. Two persistent
 * generated columns let one ascending index serve both the predicate and the ORDER BY with no
 * filesort: `claimable` (1 for queued/retry, NULL otherwise) and `claim_rank` (2^64 − 1 −
 * capacity_bytes, i.e. ~capacity_bytes, so "largest capacity first, then oldest" is ascending
 * (claim_rank, id) and "capacity ≤ limit" is the range claim_rank ≥ ~limit). An ascending
 * index works on every MariaDB from 10.6; descending index columns only count from 10.8
 * (schema v1 used them).
 * The hint keeps the plan when the statistics are odd; the schema test EXPLAINs the query with
 * and without it. */
const char db_claim_select_sql[] = "SELECT id FROM processing_jobs FORCE INDEX (ix_jobs_claim_rank)"
				   " WHERE claimable = 1 AND claim_rank >= ~? AND next_attempt_at <= NOW(6)"
				   " AND (station IS NULL OR station = ?) AND min_device_bytes <= ?"
				   " ORDER BY claim_rank, id LIMIT 1 FOR UPDATE SKIP LOCKED";

static const char *const v1[] = {
	"CREATE TABLE IF NOT EXISTS schema_migrations ("
	" version INT NOT NULL PRIMARY KEY,"
	" name VARCHAR(128) NOT NULL,"
	" applied_at DATETIME(6) NOT NULL DEFAULT NOW(6)"
	") ENGINE=InnoDB",

	"CREATE TABLE IF NOT EXISTS orders ("
	" id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
	" order_number VARCHAR(64) NOT NULL,"
	" customer VARCHAR(255) NULL,"
	" capacity_bytes BIGINT UNSIGNED NOT NULL,"
	" quantity INT NOT NULL,"
	" content_spec JSON NULL,"
	" image_path VARCHAR(4096) NULL,"
	" image_bytes BIGINT UNSIGNED NULL,"
	" station VARCHAR(64) NULL,"
	" status ENUM('pending','confirmed','processing','done','failed','cancelled') NOT NULL DEFAULT 'pending',"
	" created_at DATETIME(6) NOT NULL DEFAULT NOW(6),"
	" confirmed_at DATETIME(6) NULL,"
	" updated_at DATETIME(6) NOT NULL DEFAULT NOW(6) ON UPDATE NOW(6),"
	" UNIQUE KEY uq_orders_number (order_number),"
	" KEY ix_orders_status (status),"
	" CONSTRAINT ck_orders_quantity CHECK (quantity >= 1),"
	" CONSTRAINT ck_orders_capacity CHECK (capacity_bytes > 0),"
	" CONSTRAINT ck_orders_spec_json CHECK (content_spec IS NULL OR JSON_VALID(content_spec)),"
	" CONSTRAINT ck_orders_source CHECK ((content_spec IS NULL) <> (image_path IS NULL)),"
	" CONSTRAINT ck_orders_confirmed_at CHECK (confirmed_at IS NULL OR confirmed_at >= created_at)"
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",

	"CREATE TABLE IF NOT EXISTS processing_jobs ("
	" id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
	" order_id BIGINT UNSIGNED NOT NULL,"
	" unit_index INT NOT NULL,"
	" schema_version VARCHAR(8) NOT NULL DEFAULT 'v1',"
	" correlation_id VARCHAR(128) NULL,"
	" station VARCHAR(64) NULL,"
	" capacity_bytes BIGINT UNSIGNED NOT NULL,"
	" min_device_bytes BIGINT UNSIGNED NOT NULL DEFAULT 0,"
	" status ENUM('queued','processing','retry','done','failed','cancelled') NOT NULL DEFAULT 'queued',"
	" claimable TINYINT AS (IF(status IN ('queued','retry'), 1, NULL)) PERSISTENT,"
	" stage ENUM('pending','validation','selection','writing','verification','done') NOT NULL DEFAULT 'pending',"
	" progress TINYINT NOT NULL DEFAULT 0,"
	" progress_detail JSON NULL,"
	" attempts INT NOT NULL DEFAULT 0,"
	" max_attempts INT NOT NULL DEFAULT 4,"
	" generation INT NOT NULL DEFAULT 0,"
	" next_attempt_at DATETIME(6) NOT NULL DEFAULT NOW(6),"
	" locked_by VARCHAR(128) NULL,"
	" heartbeat_at DATETIME(6) NULL,"
	" slot VARCHAR(64) NULL,"
	" device_serial VARCHAR(128) NULL,"
	" device_capacity_bytes BIGINT UNSIGNED NULL,"
	" bytes_total BIGINT UNSIGNED NULL,"
	" bytes_written BIGINT UNSIGNED NOT NULL DEFAULT 0,"
	" resume_state JSON NULL,"
	" created_at DATETIME(6) NOT NULL DEFAULT NOW(6),"
	" started_at DATETIME(6) NULL,"
	" completed_at DATETIME(6) NULL,"
	" failed_at DATETIME(6) NULL,"
	" cancel_requested_at DATETIME(6) NULL,"
	" cancelled_at DATETIME(6) NULL,"
	" cancelled_by VARCHAR(128) NULL,"
	" fail_reason TEXT NULL,"
	" error_code VARCHAR(32) NULL,"
	" stuck_reported_at DATETIME(6) NULL,"
	" updated_at DATETIME(6) NOT NULL DEFAULT NOW(6) ON UPDATE NOW(6),"
	" UNIQUE KEY uq_jobs_unit (order_id, unit_index, schema_version),"
	" KEY ix_jobs_claim (claimable DESC, capacity_bytes DESC, id, station, next_attempt_at, min_device_bytes),"
	" KEY ix_jobs_status (status, heartbeat_at),"
	" KEY ix_jobs_queued_age (status, created_at),"
	" CONSTRAINT fk_jobs_order FOREIGN KEY (order_id) REFERENCES orders (id),"
	" CONSTRAINT ck_jobs_progress CHECK (progress BETWEEN 0 AND 100),"
	" CONSTRAINT ck_jobs_attempts CHECK (attempts >= 0 AND max_attempts >= 1 AND attempts <= max_attempts),"
	" CONSTRAINT ck_jobs_unit CHECK (unit_index >= 0),"
	" CONSTRAINT ck_jobs_detail_json CHECK (progress_detail IS NULL OR JSON_VALID(progress_detail)),"
	" CONSTRAINT ck_jobs_resume_json CHECK (resume_state IS NULL OR JSON_VALID(resume_state)),"
	" CONSTRAINT ck_jobs_started CHECK (started_at IS NULL OR started_at >= created_at),"
	" CONSTRAINT ck_jobs_completed CHECK (completed_at IS NULL OR (started_at IS NOT NULL AND completed_at >= started_at)),"
	" CONSTRAINT ck_jobs_failed CHECK (failed_at IS NULL OR failed_at >= created_at),"
	" CONSTRAINT ck_jobs_failed_started CHECK (failed_at IS NULL OR started_at IS NULL OR failed_at >= started_at),"
	" CONSTRAINT ck_jobs_cancelled CHECK (cancelled_at IS NULL OR cancelled_at >= created_at),"
	" CONSTRAINT ck_jobs_cancelled_started CHECK (cancelled_at IS NULL OR started_at IS NULL OR cancelled_at >= started_at),"
	" CONSTRAINT ck_jobs_cancel_req CHECK (cancel_requested_at IS NULL OR cancel_requested_at >= created_at),"
	" CONSTRAINT ck_jobs_heartbeat CHECK (heartbeat_at IS NULL OR heartbeat_at >= created_at),"
	" CONSTRAINT ck_jobs_bytes CHECK (bytes_total IS NULL OR bytes_written <= bytes_total)"
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",

	"CREATE TABLE IF NOT EXISTS processing_job_logs ("
	" id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
	" job_id BIGINT UNSIGNED NOT NULL,"
	" attempt INT NOT NULL DEFAULT 0,"
	" created_at DATETIME(6) NOT NULL DEFAULT NOW(6),"
	" level ENUM('debug','info','warn','error') NOT NULL,"
	" stage ENUM('pending','validation','selection','writing','verification','done') NOT NULL,"
	" category ENUM('stage','progress','device','system') NOT NULL,"
	" message TEXT NOT NULL,"
	" error_code VARCHAR(32) NULL,"
	" details JSON NULL,"
	" KEY ix_logs_job (job_id, id),"
	" KEY ix_logs_level (level, created_at),"
	" CONSTRAINT fk_logs_job FOREIGN KEY (job_id) REFERENCES processing_jobs (id) ON DELETE CASCADE,"
	" CONSTRAINT ck_logs_details_json CHECK (details IS NULL OR JSON_VALID(details))"
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",

	"CREATE TABLE IF NOT EXISTS content_items ("
	" id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
	" category VARCHAR(255) COLLATE utf8mb4_bin NOT NULL,"
	" title VARCHAR(1024) COLLATE utf8mb4_bin NOT NULL,"
	" rel_path VARCHAR(4096) COLLATE utf8mb4_bin NOT NULL,"
	" rel_path_hash BINARY(32) AS (UNHEX(SHA2(rel_path, 256))) PERSISTENT,"
	" size_bytes BIGINT UNSIGNED NOT NULL,"
	" sha256 CHAR(64) CHARACTER SET ascii NOT NULL,"
	" mtime DATETIME(6) NOT NULL,"
	" active TINYINT(1) NOT NULL DEFAULT 1,"
	" scan_mark BIGINT NOT NULL DEFAULT 0,"
	" created_at DATETIME(6) NOT NULL DEFAULT NOW(6),"
	" updated_at DATETIME(6) NOT NULL DEFAULT NOW(6) ON UPDATE NOW(6),"
	" UNIQUE KEY uq_content_rel_path (rel_path_hash),"
	" KEY ix_content_category (active, category, rel_path(255)),"
	" CONSTRAINT ck_content_sha CHECK (sha256 REGEXP '^[0-9a-f]{64}$')"
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",

	"CREATE TABLE IF NOT EXISTS processing_job_items ("
	" job_id BIGINT UNSIGNED NOT NULL,"
	" position INT NOT NULL,"
	" content_item_id BIGINT UNSIGNED NOT NULL,"
	" size_bytes BIGINT UNSIGNED NOT NULL,"
	" dest_path VARCHAR(4096) COLLATE utf8mb4_bin NOT NULL,"
	" PRIMARY KEY (job_id, position),"
	" CONSTRAINT fk_items_job FOREIGN KEY (job_id) REFERENCES processing_jobs (id) ON DELETE CASCADE,"
	" CONSTRAINT fk_items_content FOREIGN KEY (content_item_id) REFERENCES content_items (id),"
	" CONSTRAINT ck_items_position CHECK (position >= 0)"
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",

	"CREATE TABLE IF NOT EXISTS devices ("
	" station VARCHAR(64) NOT NULL,"
	" slot VARCHAR(64) NOT NULL,"
	" devnode VARCHAR(255) NULL,"
	" serial VARCHAR(128) NULL,"
	" vendor VARCHAR(128) NULL,"
	" model VARCHAR(128) NULL,"
	" capacity_bytes BIGINT UNSIGNED NULL,"
	" usb_speed_mbps INT NULL,"
	" port_path VARCHAR(64) NULL,"
	" state ENUM('empty','ready','busy','bad','unsafe') NOT NULL DEFAULT 'empty',"
	" state_reason VARCHAR(255) NULL,"
	" current_job_id BIGINT UNSIGNED NULL,"
	" last_seen_at DATETIME(6) NOT NULL DEFAULT NOW(6),"
	" PRIMARY KEY (station, slot)"
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",

	"CREATE TABLE IF NOT EXISTS workers ("
	" id VARCHAR(128) NOT NULL PRIMARY KEY,"
	" station VARCHAR(64) NOT NULL,"
	" hostname VARCHAR(255) NOT NULL,"
	" pid INT NOT NULL,"
	" version VARCHAR(32) NOT NULL,"
	" started_at DATETIME(6) NOT NULL DEFAULT NOW(6),"
	" heartbeat_at DATETIME(6) NOT NULL DEFAULT NOW(6),"
	" stopped_at DATETIME(6) NULL,"
	" KEY ix_workers_station (station)"
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",

	"CREATE TABLE IF NOT EXISTS events ("
	" id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
	" aggregate_type VARCHAR(32) NOT NULL,"
	" aggregate_id BIGINT UNSIGNED NOT NULL,"
	" event_type VARCHAR(64) NOT NULL,"
	" generation INT NOT NULL DEFAULT 0,"
	" payload JSON NOT NULL,"
	" created_at DATETIME(6) NOT NULL DEFAULT NOW(6),"
	" published_at DATETIME(6) NULL,"
	" UNIQUE KEY uq_events_once (aggregate_type, aggregate_id, event_type, generation),"
	" KEY ix_events_unpublished (published_at, id),"
	" CONSTRAINT ck_events_payload_json CHECK (JSON_VALID(payload))"
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",

	"CREATE TABLE IF NOT EXISTS audit_log ("
	" id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,"
	" created_at DATETIME(6) NOT NULL DEFAULT NOW(6),"
	" actor VARCHAR(128) NOT NULL,"
	" entity_type VARCHAR(32) NOT NULL,"
	" entity_id BIGINT UNSIGNED NOT NULL,"
	" action VARCHAR(64) NOT NULL,"
	" metadata JSON NULL,"
	" KEY ix_audit_entity (entity_type, entity_id, id),"
	" CONSTRAINT ck_audit_metadata_json CHECK (metadata IS NULL OR JSON_VALID(metadata))"
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",

	/* The thresholds the views use; the daemon writes its configured values at start. */
	"CREATE TABLE IF NOT EXISTS settings ("
	" name VARCHAR(64) NOT NULL PRIMARY KEY,"
	" value DOUBLE NOT NULL,"
	" updated_at DATETIME(6) NOT NULL DEFAULT NOW(6) ON UPDATE NOW(6)"
	") ENGINE=InnoDB",
	"INSERT IGNORE INTO settings (name, value) VALUES"
	" ('stuck.processing_timeout', 300), ('stuck.queued_timeout', 900)",

	"CREATE OR REPLACE VIEW v_queue_stats AS"
	" SELECT s.status,"
	"  COUNT(j.id) AS jobs,"
	"  AVG(CASE WHEN j.status = 'done' THEN TIMESTAMPDIFF(MICROSECOND, j.started_at, j.completed_at) / 1e6 END)"
	"   AS avg_duration_seconds,"
	"  MIN(j.created_at) AS oldest_created_at"
	" FROM (SELECT 'queued' AS status UNION ALL SELECT 'processing' UNION ALL SELECT 'retry'"
	"       UNION ALL SELECT 'done' UNION ALL SELECT 'failed' UNION ALL SELECT 'cancelled') s"
	" LEFT JOIN processing_jobs j ON j.status = s.status"
	" GROUP BY s.status",

	"CREATE OR REPLACE VIEW v_stuck_jobs AS"
	" SELECT j.id AS job_id, o.order_number, j.status, j.stage, j.locked_by, j.slot, j.attempts,"
	"  j.heartbeat_at, j.created_at,"
	"  CASE WHEN j.status = 'processing' THEN 'processing' ELSE 'queued' END AS stuck_kind,"
	"  TIMESTAMPDIFF(MICROSECOND, IF(j.status = 'processing', j.heartbeat_at, j.created_at), NOW(6)) / 1e6"
	"   AS age_seconds"
	" FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
	" WHERE (j.status = 'processing' AND j.heartbeat_at < NOW(6) - INTERVAL"
	"        (SELECT value FROM settings WHERE name = 'stuck.processing_timeout') * 1000000 MICROSECOND)"
	"    OR (j.status = 'queued' AND j.created_at < NOW(6) - INTERVAL"
	"        (SELECT value FROM settings WHERE name = 'stuck.queued_timeout') * 1000000 MICROSECOND)",

	"CREATE OR REPLACE VIEW v_job_timeline AS"
	" SELECT l.job_id, o.order_number, j.unit_index, l.id AS log_id, l.created_at,"
	"  TIMESTAMPDIFF(MICROSECOND, j.created_at, l.created_at) / 1e6 AS t_seconds,"
	"  l.attempt, l.level, l.stage, l.category, l.message, l.error_code, l.details"
	" FROM processing_job_logs l"
	" JOIN processing_jobs j ON j.id = l.job_id"
	" JOIN orders o ON o.id = j.order_id",
};

/* v2: a claim index that MariaDB 10.6 and 10.7 can use for the claim's ORDER BY too; queued
 * age in v_stuck_jobs from the last requeue; and the XXH3-128 of every library file, computed by the scan in the same pass as its SHA-256.
 * The composer checks each file against it as it copies the bytes to a stick (util/filehash.h
 * says why). Existing rows keep NULL until the next scan fills it in; until then the composer
 * checks their SHA-256 instead. */
static const char *const v2[] = {
	/* the claim index without descending columns (see db_claim_select_sql) */
	"ALTER TABLE processing_jobs ADD COLUMN IF NOT EXISTS claim_rank BIGINT UNSIGNED"
	" AS (~capacity_bytes) PERSISTENT AFTER capacity_bytes",
	"CREATE INDEX IF NOT EXISTS ix_jobs_claim_rank ON processing_jobs"
	" (claimable, claim_rank, id, station, next_attempt_at, min_device_bytes)",
	"ALTER TABLE processing_jobs DROP INDEX IF EXISTS ix_jobs_claim",
	"ALTER TABLE content_items ADD COLUMN IF NOT EXISTS xxh128 CHAR(32) CHARACTER SET ascii NULL AFTER sha256",
	"ALTER TABLE content_items ADD CONSTRAINT IF NOT EXISTS ck_content_xxh"
	" CHECK (xxh128 IS NULL OR xxh128 REGEXP '^[0-9a-f]{32}$')",
	/* the stick a resume state belongs to (db/jobs.c RESUME_DEVICE_SQL) */
	"ALTER TABLE processing_jobs ADD COLUMN IF NOT EXISTS resume_device VARCHAR(160) NULL AFTER resume_state",
	/* a slot holding a finished stick (udev mode) waits for it to be taken out */
	"ALTER TABLE devices MODIFY state ENUM('empty','ready','busy','bad','unsafe','done') NOT NULL DEFAULT 'empty'",
	/* a queued job's age counts from when it last entered the queue (next_attempt_at: set on
	 * every requeue, created_at for a new job), not from its creation: the reaper, queue stats
	 * and v_stuck_jobs read it through this index */
	"CREATE INDEX IF NOT EXISTS ix_jobs_queued_since ON processing_jobs (status, next_attempt_at)",
	"ALTER TABLE processing_jobs DROP INDEX IF EXISTS ix_jobs_queued_age",
	"CREATE OR REPLACE VIEW v_stuck_jobs AS"
	" SELECT j.id AS job_id, o.order_number, j.status, j.stage, j.locked_by, j.slot, j.attempts,"
	"  j.heartbeat_at, j.created_at,"
	"  CASE WHEN j.status = 'processing' THEN 'processing' ELSE 'queued' END AS stuck_kind,"
	"  TIMESTAMPDIFF(MICROSECOND, IF(j.status = 'processing', j.heartbeat_at, j.next_attempt_at), NOW(6)) / 1e6"
	"   AS age_seconds"
	" FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
	" WHERE (j.status = 'processing' AND j.heartbeat_at < NOW(6) - INTERVAL"
	"        (SELECT value FROM settings WHERE name = 'stuck.processing_timeout') * 1000000 MICROSECOND)"
	"    OR (j.status = 'queued' AND j.next_attempt_at < NOW(6) - INTERVAL"
	"        (SELECT value FROM settings WHERE name = 'stuck.queued_timeout') * 1000000 MICROSECOND)",
};

/* v3: job.started (issue 14). It is written once per claim of a job that reaches the writing
 * stage: processing_jobs.claims counts the claims, and events.seq (the claim's number for
 * job.started, 0 for every event written once per generation) joins the once-only key. The
 * write and verify speeds of each done job, and a covering index for the recent average of a
 * capacity (db/jobs.c JOB_SPEED_SQL) and of a stick's serial (STICK_SPEED_SQL): the estimate of
 * a unit whose stick has no measurement. */
static const char *const v3[] = {
	"ALTER TABLE processing_jobs ADD COLUMN IF NOT EXISTS claims INT NOT NULL DEFAULT 0 AFTER attempts",
	"ALTER TABLE processing_jobs ADD COLUMN IF NOT EXISTS write_bytes_per_s DOUBLE NULL AFTER bytes_written,"
	" ADD COLUMN IF NOT EXISTS verify_bytes_per_s DOUBLE NULL AFTER write_bytes_per_s",
	"CREATE INDEX IF NOT EXISTS ix_jobs_speed ON processing_jobs"
	" (status, capacity_bytes, completed_at, write_bytes_per_s, verify_bytes_per_s)",
	"CREATE INDEX IF NOT EXISTS ix_jobs_serial_speed ON processing_jobs"
	" (device_serial, status, completed_at, write_bytes_per_s, verify_bytes_per_s)",
	"ALTER TABLE events ADD COLUMN IF NOT EXISTS seq INT NOT NULL DEFAULT 0 AFTER generation",
	"ALTER TABLE events DROP INDEX IF EXISTS uq_events_once,"
	" ADD UNIQUE KEY uq_events_once (aggregate_type, aggregate_id, event_type, generation, seq)",
};

/* v4: the outbox relay's lease (db/outbox.h): one row, taken and renewed with a guarded UPDATE
 * on the server's clock by whichever usbforged delivers the events. */
static const char *const v4[] = {
	"CREATE TABLE IF NOT EXISTS outbox_lease ("
	" name VARCHAR(64) NOT NULL PRIMARY KEY,"
	" holder VARCHAR(128) NULL,"
	" expires_at DATETIME(6) NOT NULL"
	") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
	"INSERT IGNORE INTO outbox_lease (name, holder, expires_at) VALUES ('relay', NULL, '2000-01-01 00:00:00')",
};

/* v5: history that does not slow anything down (issue 15). Every read of the CLI, the views
 * and the HTTP API is served by an index, with a million finished jobs and ten million log rows:
 *  - ix_jobs_status_id: `jobs --status S` newest first (ORDER BY id DESC within one status);
 *  - ix_jobs_created: the oldest job of each state (v_queue_stats.oldest_created_at);
 *  - ix_jobs_completed, ix_jobs_failed: the jobs that ended within a window (db/jobstats.c),
 *    the first covering the duration of the done ones.
 * Finished jobs are counted in job_status_counts, kept exact by triggers on processing_jobs in
 * the transaction that changes a row (so every path counts: finish, cancel, retry, reaping,
 * pruning, an operator's SQL). A finished state's count and the done jobs' total duration are
 * the sum of its 16 shard rows (shard = id % 16: jobs finishing at once update different rows,
 * and a row may go negative when a job counted in one shard leaves from it: only the sum
 * means something). The active states stay counted from their rows (a queue, not a history).
 * The counts are seeded after the triggers exist (REPLACE: a rerun sets them again). */
static const char *const v5[] = {
	"CREATE INDEX IF NOT EXISTS ix_jobs_status_id ON processing_jobs (status, id)",
	"CREATE INDEX IF NOT EXISTS ix_jobs_created ON processing_jobs (status, created_at)",
	"CREATE INDEX IF NOT EXISTS ix_jobs_completed ON processing_jobs (status, completed_at, started_at)",
	"CREATE INDEX IF NOT EXISTS ix_jobs_failed ON processing_jobs (status, failed_at)",
	"CREATE TABLE IF NOT EXISTS job_status_counts ("
	" status ENUM('done','failed','cancelled') NOT NULL,"
	" shard TINYINT UNSIGNED NOT NULL,"
	" jobs BIGINT NOT NULL DEFAULT 0,"
	" timed BIGINT NOT NULL DEFAULT 0,"
	" duration_us BIGINT NOT NULL DEFAULT 0,"
	" PRIMARY KEY (status, shard)"
	") ENGINE=InnoDB",
	"CREATE OR REPLACE TRIGGER tr_jobs_count_insert AFTER INSERT ON processing_jobs FOR EACH ROW"
	" IF NEW.status IN ('done','failed','cancelled') THEN"
	"  INSERT INTO job_status_counts (status, shard, jobs, timed, duration_us)"
	"  VALUES (NEW.status, NEW.id % 16, 1, NEW.status = 'done' AND NEW.completed_at IS NOT NULL,"
	"   IF(NEW.status = 'done', COALESCE(TIMESTAMPDIFF(MICROSECOND, NEW.started_at, NEW.completed_at), 0), 0))"
	"  ON DUPLICATE KEY UPDATE jobs = jobs + VALUES(jobs), timed = timed + VALUES(timed),"
	"   duration_us = duration_us + VALUES(duration_us);"
	" END IF",
	"CREATE OR REPLACE TRIGGER tr_jobs_count_update AFTER UPDATE ON processing_jobs FOR EACH ROW"
	" IF NOT (OLD.status <=> NEW.status AND OLD.started_at <=> NEW.started_at"
	"         AND OLD.completed_at <=> NEW.completed_at) THEN"
	"  IF OLD.status IN ('done','failed','cancelled') THEN"
	"   INSERT INTO job_status_counts (status, shard, jobs, timed, duration_us)"
	"   VALUES (OLD.status, OLD.id % 16, -1, -(OLD.status = 'done' AND OLD.completed_at IS NOT NULL),"
	"    -IF(OLD.status = 'done', COALESCE(TIMESTAMPDIFF(MICROSECOND, OLD.started_at, OLD.completed_at), 0), 0))"
	"   ON DUPLICATE KEY UPDATE jobs = jobs + VALUES(jobs), timed = timed + VALUES(timed),"
	"    duration_us = duration_us + VALUES(duration_us);"
	"  END IF;"
	"  IF NEW.status IN ('done','failed','cancelled') THEN"
	"   INSERT INTO job_status_counts (status, shard, jobs, timed, duration_us)"
	"   VALUES (NEW.status, NEW.id % 16, 1, NEW.status = 'done' AND NEW.completed_at IS NOT NULL,"
	"    IF(NEW.status = 'done', COALESCE(TIMESTAMPDIFF(MICROSECOND, NEW.started_at, NEW.completed_at), 0), 0))"
	"   ON DUPLICATE KEY UPDATE jobs = jobs + VALUES(jobs), timed = timed + VALUES(timed),"
	"    duration_us = duration_us + VALUES(duration_us);"
	"  END IF;"
	" END IF",
	"CREATE OR REPLACE TRIGGER tr_jobs_count_delete AFTER DELETE ON processing_jobs FOR EACH ROW"
	" IF OLD.status IN ('done','failed','cancelled') THEN"
	"  INSERT INTO job_status_counts (status, shard, jobs, timed, duration_us)"
	"  VALUES (OLD.status, OLD.id % 16, -1, -(OLD.status = 'done' AND OLD.completed_at IS NOT NULL),"
	"   -IF(OLD.status = 'done', COALESCE(TIMESTAMPDIFF(MICROSECOND, OLD.started_at, OLD.completed_at), 0), 0))"
	"  ON DUPLICATE KEY UPDATE jobs = jobs + VALUES(jobs), timed = timed + VALUES(timed),"
	"   duration_us = duration_us + VALUES(duration_us);"
	" END IF",
	"DELETE FROM job_status_counts",
	"REPLACE INTO job_status_counts (status, shard, jobs, timed, duration_us)"
	" SELECT status, id % 16, COUNT(*), COUNT(IF(status = 'done', completed_at, NULL)),"
	"  COALESCE(SUM(IF(status = 'done', TIMESTAMPDIFF(MICROSECOND, started_at, completed_at), 0)), 0)"
	" FROM processing_jobs WHERE status IN ('done','failed','cancelled') GROUP BY status, id % 16",

	/* the daily prune's lease (db/prune.h), free until a daemon takes it */
	"INSERT IGNORE INTO outbox_lease (name, holder, expires_at) VALUES ('prune', NULL, '2000-01-01 00:00:00')",

	/* one indexed lookup per state: the active ones counted from their rows, the finished ones
	 * from job_status_counts (the done jobs' mean duration from its exact totals) */
	"CREATE OR REPLACE VIEW v_queue_stats AS"
	" SELECT 'queued' AS status, (SELECT COUNT(*) FROM processing_jobs WHERE status = 'queued') AS jobs,"
	"  CAST(NULL AS DOUBLE) AS avg_duration_seconds,"
	"  (SELECT MIN(created_at) FROM processing_jobs WHERE status = 'queued') AS oldest_created_at"
	" UNION ALL SELECT 'processing', (SELECT COUNT(*) FROM processing_jobs WHERE status = 'processing'), NULL,"
	"  (SELECT MIN(created_at) FROM processing_jobs WHERE status = 'processing')"
	" UNION ALL SELECT 'retry', (SELECT COUNT(*) FROM processing_jobs WHERE status = 'retry'), NULL,"
	"  (SELECT MIN(created_at) FROM processing_jobs WHERE status = 'retry')"
	" UNION ALL SELECT 'done', (SELECT CAST(COALESCE(SUM(jobs), 0) AS SIGNED) FROM job_status_counts WHERE status = 'done'),"
	"  (SELECT SUM(duration_us) / NULLIF(SUM(timed), 0) / 1e6 FROM job_status_counts WHERE status = 'done'),"
	"  (SELECT MIN(created_at) FROM processing_jobs WHERE status = 'done')"
	" UNION ALL SELECT 'failed', (SELECT CAST(COALESCE(SUM(jobs), 0) AS SIGNED) FROM job_status_counts WHERE status = 'failed'),"
	"  NULL, (SELECT MIN(created_at) FROM processing_jobs WHERE status = 'failed')"
	" UNION ALL SELECT 'cancelled', (SELECT CAST(COALESCE(SUM(jobs), 0) AS SIGNED) FROM job_status_counts WHERE status = 'cancelled'),"
	"  NULL, (SELECT MIN(created_at) FROM processing_jobs WHERE status = 'cancelled')",

	/* the two kinds of stuck job, each from its own index (ix_jobs_status, ix_jobs_queued_since) */
	"CREATE OR REPLACE VIEW v_stuck_jobs AS"
	" SELECT j.id AS job_id, o.order_number, j.status, j.stage, j.locked_by, j.slot, j.attempts,"
	"  j.heartbeat_at, j.created_at, 'processing' AS stuck_kind,"
	"  TIMESTAMPDIFF(MICROSECOND, j.heartbeat_at, NOW(6)) / 1e6 AS age_seconds"
	" FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
	" WHERE j.status = 'processing' AND j.heartbeat_at < NOW(6) - INTERVAL"
	"  (SELECT value FROM settings WHERE name = 'stuck.processing_timeout') * 1000000 MICROSECOND"
	" UNION ALL"
	" SELECT j.id, o.order_number, j.status, j.stage, j.locked_by, j.slot, j.attempts,"
	"  j.heartbeat_at, j.created_at, 'queued',"
	"  TIMESTAMPDIFF(MICROSECOND, j.next_attempt_at, NOW(6)) / 1e6"
	" FROM processing_jobs j JOIN orders o ON o.id = j.order_id"
	" WHERE j.status = 'queued' AND j.next_attempt_at < NOW(6) - INTERVAL"
	"  (SELECT value FROM settings WHERE name = 'stuck.queued_timeout') * 1000000 MICROSECOND",
};

/* The server refused a statement for want of a privilege (the daemon's account has only SELECT,
 * INSERT, UPDATE, DELETE): db_migrate says -EACCES so that its caller can name the admin account. */
static bool access_denied(unsigned e)
{
	return e == ER_TABLEACCESS_DENIED_ERROR || e == ER_DBACCESS_DENIED_ERROR || e == ER_COLUMNACCESS_DENIED_ERROR ||
	       e == ER_SPECIFIC_ACCESS_DENIED_ERROR || e == ER_PROCACCESS_DENIED_ERROR;
}

struct migration {
	int version;
	const char *name;
	const char *const *stmts;
	size_t n;
};

static const struct migration migrations[] = {
	{ 1, "initial schema", v1, ARRAY_SIZE(v1) },
	{ 2, "ascending claim index; content_items.xxh128; queued age from the last requeue", v2, ARRAY_SIZE(v2) },
	{ 3, "job.started once per claim (events.seq, processing_jobs.claims); write and verify speeds", v3,
	  ARRAY_SIZE(v3) },
	{ 4, "the outbox relay's lease", v4, ARRAY_SIZE(v4) },
	{ 5, "history served by indexes; finished jobs counted by triggers (job_status_counts)", v5, ARRAY_SIZE(v5) },
};

int db_schema_latest(void) { return migrations[ARRAY_SIZE(migrations) - 1].version; }

int db_schema_current(struct db *db, int *ret)
{
	int64_t v = 0;
	int64_t exists = 0;
	int r = db_query_i64(db, &exists,
			     "SELECT COUNT(*) FROM information_schema.tables"
			     " WHERE table_schema = DATABASE() AND table_name = 'schema_migrations'",
			     DB_END);
	if (r < 0)
		return r;
	if (!exists) {
		*ret = 0;
		return 0;
	}
	r = db_query_i64(db, &v, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", DB_END);
	if (r < 0)
		return r;
	*ret = (int)v;
	return 0;
}

/* Apply the migrations the database lacks, under the migration lock. */
static int migrate_locked(struct db *db, int *ret_applied)
{
	int cur = 0;
	int r = db_schema_current(db, &cur);
	if (r < 0)
		return r;
	for (size_t i = 0; i < ARRAY_SIZE(migrations); i++) {
		const struct migration *m = &migrations[i];
		if (m->version <= cur)
			continue;
		for (size_t s = 0; s < m->n; s++) {
			r = db_exec(db, NULL, m->stmts[s], DB_END);
			if (r < 0) {
				log_debug("migration %d statement %zu failed: %s", m->version, s, db_error(db));
				return access_denied(db_errno(db)) ? -EACCES : r;
			}
		}
		r = db_exec(db, NULL, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", DB_I64(m->version),
			    DB_STR(m->name), DB_END);
		if (r < 0)
			return access_denied(db_errno(db)) ? -EACCES : r;
		(*ret_applied)++;
	}
	return 0;
}

int db_migrate(struct db *db, int *ret_applied)
{
	int64_t got = 0;
	int applied = 0, r;

	/* up to a minute for another migrating process, in waits shorter than the read timeout */
	for (int i = 0; i < 6 && got != 1; i++) {
		r = db_query_i64(db, &got, "SELECT GET_LOCK(CONCAT(DATABASE(), '.usbforge_migrate'), 10)", DB_END);
		if (r < 0)
			return r;
	}
	if (got != 1)
		return -ETIMEDOUT;
	r = migrate_locked(db, &applied);
	/* the release must not wipe the reason the caller reports */
	unsigned e = db_errno(db);
	_cleanup_free_ char *why = r < 0 ? strdup(db_error(db)) : NULL;
	(void)db_exec(db, NULL, "DO RELEASE_LOCK(CONCAT(DATABASE(), '.usbforge_migrate'))", DB_END);
	if (r < 0) {
		db_set_error(db, e, why ? why : "out of memory");
		return r;
	}
	if (ret_applied)
		*ret_applied = applied;
	return 0;
}
