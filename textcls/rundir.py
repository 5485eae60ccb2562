"""Transitional: the run directory moved to the run layer, textcls/run/. Import from there."""

from textcls.run.info import (  # noqa: F401
                              FORMAT_VERSION,
                              expected_checksums,
                              load_run_config,
                              read_run_info,
                              save_eval_report,
                              save_run_files,
                              write_run_info,
)
from textcls.run.layout import EVAL_REPORT  # noqa: F401
from textcls.run.load import (  # noqa: F401
                              GroupedEnsemble,
                              Run,
                              base_keys,
                              base_reference,
                              build_model,
                              load_base_state,
                              load_full_state,
                              load_run,
                              load_state,
                              weights_digest,
)
from textcls.run.weights import load_weights, save_weights, write_weights  # noqa: F401
