//! joblog's integration suite: every case runs on SQLite (file and memory), PostgreSQL
//! and MySQL/MariaDB, each on a fresh database, re-reading through fresh connections.

mod alerts;
mod cases;
mod common;
mod metrics;

common::backend_tests!(
    migrate_is_idempotent_beside_a_host_migrator,
    schema_has_the_documented_constraints,
    lifecycle_new_processing_success,
    error_records_the_cause_chain,
    invalid_transitions_are_errors,
    dropped_guard_is_marked_error,
    panic_inside_run_is_recorded_with_message,
    panic_with_a_bare_guard_is_recorded,
    cancelled_task_is_recorded,
    run_closure_results_are_recorded,
    details_are_visible_while_the_run_goes_on,
    details_keep_their_order_across_handles,
    queue_overflow_is_counted_not_blocking,
    database_outage_never_blocks_and_recovers,
    fifty_concurrent_starts_get_distinct_names,
    names_follow_the_configured_timezone,
    two_processes_start_in_the_same_second,
    heartbeats_and_reaper,
    killed_process_run_is_reaped,
    prune_by_age_and_keep_last,
    list_runs_filters_and_keyset_pages,
    count_details_tail_and_job_summaries,
    shares_a_host_connection,
    tracing_events_become_details,
    locked_database_is_waited_out_within_the_bound,
    a_taken_name_gets_the_first_free_suffix,
    dropped_connections_are_survived,
    bad_rows_never_block_other_runs,
    heartbeats_go_on_under_a_stream_of_details,
    migrations_survive_races_and_half_done_runs,
    tracing_layer_works_under_a_warn_filter,
    extreme_inputs_do_not_panic,
    awkward_messages_round_trip_exactly,
    a_refused_status_change_takes_its_details_with_it,
    a_refused_row_spares_the_rest_of_its_batch,
    metrics_count_runs_and_read_the_database,
    metrics_survive_a_missing_table,
    alerts_on_failure_and_recovery_once_each,
    alerts_when_overdue_from_one_of_two_instances,
    a_webhook_that_is_down_is_retried_and_shown,
    a_bad_webhook_url_is_refused,
    an_alert_is_raised_by_another_instance,
);
