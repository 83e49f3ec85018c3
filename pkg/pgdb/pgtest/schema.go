package pgtest

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"
)

// Schema describes the public schema's tables, columns, defaults,
// identities, constraints, indexes and sequences, one sorted line each,
// leaving out goose's own table: two databases with equal Schema have the
// same structure, whatever created them.
func Schema(tb testing.TB, db *gorm.DB) []string {
	tb.Helper()
	const q = `
SELECT line FROM (
  SELECT format('column %s.%s %s not_null=%s identity=%s default=%s', c.relname, a.attname,
                format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
                pg_get_expr(d.adbin, d.adrelid)) AS line
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND c.relname <> 'goose_db_version'
    AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
  FROM pg_constraint
  WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text <> 'goose_db_version'
  UNION ALL
  SELECT format('index %s', indexdef)
  FROM pg_indexes WHERE schemaname = 'public' AND tablename <> 'goose_db_version'
  UNION ALL
  SELECT format('sequence %s %s start=%s increment=%s min=%s max=%s cycle=%s', sequencename, data_type,
                start_value, increment_by, min_value, max_value, cycle)
  FROM pg_sequences WHERE schemaname = 'public' AND sequencename NOT LIKE 'goose_db_version%'
) s ORDER BY line`
	var lines []string
	if err := db.Raw(q).Scan(&lines).Error; err != nil {
		tb.Fatalf("read schema: %v", err)
	}
	return lines
}

// VersionTable lists goose's records (version, applied, time) in order.
func VersionTable(tb testing.TB, db *gorm.DB) []string {
	tb.Helper()
	var lines []string
	err := db.Raw(`SELECT format('%s %s %s', version_id, is_applied, tstamp) FROM goose_db_version ORDER BY id`).Scan(&lines).Error
	if err != nil {
		tb.Fatalf("read goose_db_version: %v", err)
	}
	return lines
}

// AppliedVersions lists the versions goose recorded, in the order applied.
func AppliedVersions(tb testing.TB, db *gorm.DB) []int64 {
	tb.Helper()
	var v []int64
	if err := db.Raw(`SELECT version_id FROM goose_db_version WHERE is_applied ORDER BY id`).Scan(&v).Error; err != nil {
		tb.Fatalf("read goose_db_version: %v", err)
	}
	return v
}

// CheckUpgrade runs migrate over db, which holds an older schema with rows
// in it, and fails the test unless the rows (as read by rows) come out
// unchanged, db ends with the same schema and goose versions as fresh (a
// database the same migrations built from nothing), and a second run
// records and changes nothing: an in-place upgrade that loses nothing and
// leaves no difference between old and new installations.
func CheckUpgrade[R any](tb testing.TB, db, fresh *gorm.DB, rows func() R, migrate func() error) {
	tb.Helper()
	before := rows()
	if len(Schema(tb, db)) == 0 {
		tb.Fatal("CheckUpgrade: the database has no schema to upgrade")
	}
	if err := migrate(); err != nil {
		tb.Fatalf("migrate over the older schema: %v", err)
	}
	if diff := cmp.Diff(before, rows()); diff != "" {
		tb.Errorf("rows after the upgrade (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(Schema(tb, fresh), Schema(tb, db)); diff != "" {
		tb.Errorf("schema after the upgrade (-new installation +upgraded):\n%s", diff)
	}
	if diff := cmp.Diff(AppliedVersions(tb, fresh), AppliedVersions(tb, db)); diff != "" {
		tb.Errorf("goose versions (-new installation +upgraded):\n%s", diff)
	}

	records := VersionTable(tb, db)
	if err := migrate(); err != nil {
		tb.Fatalf("second migrate: %v", err)
	}
	if diff := cmp.Diff(records, VersionTable(tb, db)); diff != "" {
		tb.Errorf("goose_db_version after a second migrate (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(before, rows()); diff != "" {
		tb.Errorf("rows after a second migrate (-before +after):\n%s", diff)
	}
}
