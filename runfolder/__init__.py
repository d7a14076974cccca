"""The run folder: its file names, table columns, trial ids, the ranking rule, atomic writes and readers.

Every package that writes or reads a run folder goes through here (docs/DESIGN.md,
"Run folder"). Importing it needs neither torch nor pandas: `models.load` reads
results through the standard library; the pandas readers import pandas on use.
"""

from ._atomic import (DiskRefusedWrite, atomic_write_folder, atomic_write_frame, atomic_write_text, atomic_write_with, current_umask,
                      disk_refusal, new_file_mode, new_folder_mode, unwritable_reason)
from ._layout import (CHECKPOINTS, CURVES_CSV, CURVES_PARQUET, LOCK, RAY_RESULTS, REPORT_HTML, REPORT_TABLES,
                      PLANS_JSON, RESULTS_CSV, RESULTS_PARQUET, RETRAIN_CSV, RETRAIN_JOBS, RETRAIN_PARQUET, RETRAINED,
                      RUN_JSON, STUDY_DB, STUDY_YAML, TRIALS_LOG, RunFolder, checkpoint_cell, retrain_job_cell,
                      retrained_cell)
from ._lock import (MAX_RECORDED_PROCESSES, LockBody, RayRecord, RecordedProcess, RunFolderBusy, RunFolderLock, holder_text, read_lock,
                    read_lock_body, session_pid)
from ._ranking import RANKING_COLUMN, RANKING_RULE, rankable, ranked_frame, ranked_rows, ranking_order, sort_key
from ._rows import (ARCH_PREFIX, CURVE_COLUMNS, FACTOR_PREFIX, REJECTED_PREFIX, REUSED_FROM, SCREEN_PREFIX, STATUSES,
                    TRAIN_JSON, TRAIN_PREFIX, curve_rows, factor_label, float_or_nan, is_missing, reused_from_cell,
                    reused_source, screen_column, train_settings_of, trial_id, trial_row)
from ._frames import REPORT_COLUMNS, read_curves, read_results
from ._retrain_rows import (LEGACY_RETRAIN_COLUMNS, RETRAIN_COLUMNS, RetrainRow, read_retrain, read_retrain_rows,
                            retrain_frame, retrain_summary, write_retrain)
from ._log import replay_log
from ._mapping import read_plans, write_plans
from ._run_info import (CPU_CORE_HOURS, GPU_HOURS, RUN_INFO_FORMAT, TRIAL_HOURS, Budget, Dataset, FactorLevels,
                        Hardware, MatchSettings, Resources, RunFolderNote, RunInfo, device_hours_unit,
                        devices_per_trial, read_run_info, read_run_json, trial_device_seconds, write_run_info,
                        write_run_json)
from ._study_record import (ASHA_PROMOTIONS, ASHA_SCHEDULES, DEFAULT_ASHA_GRACE_PERIOD, DEFAULT_ASHA_PROMOTION,
                            DEFAULT_ASHA_REDUCTION_FACTOR, DEFAULT_ASHA_SCHEDULE, DEFAULT_TARGET_EFFECT, asha_rung_epochs,
                            MAX_PRIMARY_COMPARISONS, MAX_PRIMARY_TEXT, MIN_TARGET_EFFECT, PRIMARY_LEVEL_RULE,
                            TARGET_EFFECT_RULE, PrimaryComparison, StudyRecord, is_primary_level, is_target_effect,
                            read_study_record, read_study_yaml)
from ._records import LOAD_COLUMNS, TrialRecord, read_trials
from ._tables import ResultsTables
from . import _untrusted as untrusted  # the bounded readers, for models' and search's readers of a folder's files
from ._untrusted import RunFolderError, stored_path

__all__ = [
    "untrusted",
    "RunFolder", "TRIALS_LOG", "STUDY_YAML", "RUN_JSON", "STUDY_DB", "RESULTS_PARQUET", "RESULTS_CSV", "CURVES_PARQUET",
    "CURVES_CSV", "RETRAIN_PARQUET", "RETRAIN_CSV", "CHECKPOINTS", "RETRAINED", "REPORT_HTML", "REPORT_TABLES",
    "RAY_RESULTS", "LOCK", "PLANS_JSON", "RETRAIN_JOBS", "checkpoint_cell", "retrain_job_cell", "retrained_cell",
    "atomic_write_with", "atomic_write_text", "atomic_write_frame", "atomic_write_folder", "current_umask",
    "new_file_mode", "new_folder_mode", "unwritable_reason", "DiskRefusedWrite", "disk_refusal",
    "RunFolderLock", "RunFolderBusy", "LockBody", "RayRecord", "RecordedProcess", "MAX_RECORDED_PROCESSES", "session_pid", "holder_text",
    "read_lock", "read_lock_body",
    "RANKING_COLUMN", "RANKING_RULE", "rankable", "sort_key", "ranking_order", "ranked_rows", "ranked_frame",
    "STATUSES", "CURVE_COLUMNS", "FACTOR_PREFIX", "ARCH_PREFIX", "TRAIN_PREFIX", "TRAIN_JSON", "REJECTED_PREFIX", "trial_id", "trial_row",
    "REUSED_FROM", "reused_from_cell", "SCREEN_PREFIX", "screen_column", "reused_source", "curve_rows", "train_settings_of", "factor_label", "is_missing",
    "float_or_nan",
    "RunFolderError", "TrialRecord", "ResultsTables", "REPORT_COLUMNS", "LOAD_COLUMNS",
    "read_run_json", "read_study_yaml", "write_run_json", "read_results", "read_curves", "read_retrain", "write_retrain",
    "RetrainRow", "RETRAIN_COLUMNS", "LEGACY_RETRAIN_COLUMNS", "read_retrain_rows", "retrain_frame", "retrain_summary", "read_trials",
    "replay_log", "read_plans", "write_plans", "stored_path",
    "RunInfo", "RUN_INFO_FORMAT", "read_run_info", "write_run_info", "RunFolderNote", "Resources", "Budget", "Dataset",
    "Hardware", "FactorLevels", "MatchSettings", "GPU_HOURS", "CPU_CORE_HOURS", "TRIAL_HOURS", "device_hours_unit",
    "devices_per_trial", "trial_device_seconds", "StudyRecord", "read_study_record", "DEFAULT_TARGET_EFFECT",
    "MIN_TARGET_EFFECT", "TARGET_EFFECT_RULE", "is_target_effect", "PrimaryComparison", "MAX_PRIMARY_COMPARISONS",
    "MAX_PRIMARY_TEXT", "PRIMARY_LEVEL_RULE", "is_primary_level",
    "DEFAULT_ASHA_GRACE_PERIOD", "DEFAULT_ASHA_REDUCTION_FACTOR", "DEFAULT_ASHA_SCHEDULE", "DEFAULT_ASHA_PROMOTION",
    "ASHA_SCHEDULES", "ASHA_PROMOTIONS", "asha_rung_epochs",
]
