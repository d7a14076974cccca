"""Study files: schema, validation, search spaces and the concrete settings of a trial.

    study = load_study("studies/shortcut_ablation.yaml", overrides=["train.epochs=3"])
    plan = resolve(study, {"point": grid_points(study)[0].label, "seed": 0})
    plan.spec, plan.train   # an ArchSpec and TrainSettings, ready for search.train.fit
"""

from ._describe import dry_run_report, space_size
from ._errors import StudyError
from ._loading import load_study, study_from_dict
from ._matching import KNOBS as MATCH_KNOBS
from ._matching import MATCH_METRICS, Match
from ._optuna_samplers import SAMPLERS, make_sampler
from ._reference import FieldDoc, explain, field_docs, reference_markdown, schema_text, study_json_schema
from ._sampling import (POINT, SEED, TrialPlan, constraint_violation, define_by_run, factors, grid_points,
                        grid_search_space, resolve)
from ._settings import DATASET_CLASSES, NORMALIZATIONS, OPTIMIZERS, SCHEDULES, DataSettings, TrainSettings
from ._study import GridPoint, SearchSettings, Study

__all__ = [
    "DataSettings", "TrainSettings",
    "Study", "StudyError", "SearchSettings", "load_study", "study_from_dict",
    "TrialPlan", "GridPoint", "POINT", "SEED", "resolve", "define_by_run", "grid_points", "grid_search_space",
    "factors", "constraint_violation", "space_size", "dry_run_report",
    "Match", "MATCH_KNOBS", "MATCH_METRICS",
    "OPTIMIZERS", "SCHEDULES", "NORMALIZATIONS", "DATASET_CLASSES", "SAMPLERS", "make_sampler",
    "study_json_schema", "schema_text", "field_docs", "FieldDoc", "reference_markdown", "explain",
]
