package loadtest

import (
	"context"
	"errors"
	"fmt"
)

// Cleanup removes whatever run left behind, for the script's exit trap
// after a run that did not finish: its movies, its orders, its test.*
// queues and its scratch database. Each row removes its own as it ends, so
// after a complete run there is nothing left to find.
func Cleanup(ctx context.Context, runID string) error {
	if err := CheckRunID(runID); err != nil {
		return err
	}
	env, err := LoadEnv()
	if err != nil {
		return err
	}
	var errs []error
	if db, err := connect(ctx, env.Inventory); err != nil {
		errs = append(errs, err)
	} else {
		n, err := DeleteMovies(ctx, db, runID)
		if err == nil && n > 0 {
			fmt.Printf("cleanup: deleted %s movies of run %s\n", Thousands(n), runID)
			err = VacuumAnalyze(ctx, db, "movies")
		}
		errs = append(errs, err)
		_ = db.Close(ctx)
	}
	if db, err := connect(ctx, env.Billing); err != nil {
		errs = append(errs, err)
	} else {
		users := []string{OrderUserID(runID, "b"), OrderUserID(runID, "c")}
		// Billing may still be storing orders the run left in the queue.
		if err := Settle(ctx, CountOrders(db, users...)); err != nil {
			errs = append(errs, err)
		}
		n, err := DeleteOrders(ctx, db, users...)
		if n > 0 {
			fmt.Printf("cleanup: deleted %s orders of run %s\n", Thousands(n), runID)
		}
		errs = append(errs, err)
		_ = db.Close(ctx)
	}
	errs = append(errs,
		DeleteQueues(env.Test, TestQueue(runID, "publish"), TestQueue(runID, "drain")),
		DropScratchDB(ctx, env.TestDB, runID))
	return errors.Join(errs...)
}
