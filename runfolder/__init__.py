"""The run folder: its file names, table columns, trial ids, the ranking rule, atomic writes and readers.

Every package that writes or reads a run folder goes through here (docs/DESIGN.md,
"Run folder"). Importing it needs neither torch nor pandas: `models.load` reads
results through the standard library; the pandas readers import pandas on use.
"""

from ._atomic import (atomic_write_folder, atomic_write_frame, atomic_write_text, atomic_write_with, current_umask,
                      new_file_mode, new_folder_mode, unwritable_reason)
from ._layout import (CHECKPOINTS, CURVES_CSV, CURVES_PARQUET, LOCK, RAY_RESULTS, REPORT_HTML, REPORT_TABLES,
                      PLANS_JSON, RESULTS_CSV, RESULTS_PARQUET, RETRAIN_CSV, RETRAIN_JOBS, RETRAIN_PARQUET, RETRAINED,
                      RUN_JSON, STUDY_DB, STUDY_YAML, TRIALS_LOG, RunFolder, checkpoint_cell, retrain_job_cell,
                      retrained_cell)
from ._lock import RunFolderBusy, RunFolderLock, holder_text, read_lock
from ._ranking import RANKING_COLUMN, RANKING_RULE, rankable, ranked_frame, ranked_rows, ranking_order, sort_key
from ._rows import (ARCH_PREFIX, CURVE_COLUMNS, FACTOR_PREFIX, REJECTED_PREFIX, REUSED_FROM, STATUSES, TRAIN_JSON,
                    TRAIN_PREFIX, curve_rows, factor_label, is_missing, reused_from_cell, reused_source,
                    train_settings_of, trial_id, trial_row)
from ._frames import REPORT_COLUMNS, read_curves, read_results, read_retrain, write_retrain
from ._log import replay_log
from ._mapping import RunFolderError, read_plans, read_run_json, read_study_yaml, write_plans, write_run_json
from ._records import LOAD_COLUMNS, TrialRecord, read_trials
from ._tables import ResultsTables

__all__ = [
    "RunFolder", "TRIALS_LOG", "STUDY_YAML", "RUN_JSON", "STUDY_DB", "RESULTS_PARQUET", "RESULTS_CSV", "CURVES_PARQUET",
    "CURVES_CSV", "RETRAIN_PARQUET", "RETRAIN_CSV", "CHECKPOINTS", "RETRAINED", "REPORT_HTML", "REPORT_TABLES",
    "RAY_RESULTS", "LOCK", "PLANS_JSON", "RETRAIN_JOBS", "checkpoint_cell", "retrain_job_cell", "retrained_cell",
    "atomic_write_with", "atomic_write_text", "atomic_write_frame", "atomic_write_folder", "current_umask",
    "new_file_mode", "new_folder_mode", "unwritable_reason",
    "RunFolderLock", "RunFolderBusy", "holder_text", "read_lock",
    "RANKING_COLUMN", "RANKING_RULE", "rankable", "sort_key", "ranking_order", "ranked_rows", "ranked_frame",
    "STATUSES", "CURVE_COLUMNS", "FACTOR_PREFIX", "ARCH_PREFIX", "TRAIN_PREFIX", "TRAIN_JSON", "REJECTED_PREFIX", "trial_id", "trial_row",
    "REUSED_FROM", "reused_from_cell", "reused_source", "curve_rows", "train_settings_of", "factor_label", "is_missing",
    "RunFolderError", "TrialRecord", "ResultsTables", "REPORT_COLUMNS", "LOAD_COLUMNS",
    "read_run_json", "read_study_yaml", "write_run_json", "read_results", "read_curves", "read_retrain", "write_retrain", "read_trials",
    "replay_log", "read_plans", "write_plans",
]
