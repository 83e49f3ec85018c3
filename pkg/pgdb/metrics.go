package pgdb

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gorm.io/gorm"
)

// RegisterStats adds db's connection pool statistics (open, in use, idle,
// waits) to reg, labelled db_name=name.
func RegisterStats(reg prometheus.Registerer, db *gorm.DB, name string) error {
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("pgdb: pool statistics: %w", err)
	}
	return reg.Register(collectors.NewDBStatsCollector(sqlDB, name))
}
